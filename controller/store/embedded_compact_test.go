package store_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/controller/store"
)

// TestCompactEmbedded: a file whose activations were pruned keeps its size
// until CompactEmbedded gives the room back; what is left reads the same.
func TestCompactEmbedded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var batch []store.ActivationWithSinks
	for i := range 40 {
		batch = append(batch, store.ActivationWithSinks{Activation: store.Activation{
			ID: fmt.Sprintf("01COMPACT%017d", i), Module: "_", Function: "f", Output: []byte(`"` + strings.Repeat("x", 256<<10) + `"`),
			Started: time.Now(),
		}})
	}
	if _, err := s.RecordActivations(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneActivationsBeyond(ctx, 1, 0); err != nil || n != 39 {
		t.Fatalf("PruneActivationsBeyond = %d, %v", n, err)
	}

	// Locked while the store is open.
	if _, _, err := store.CompactEmbedded(path); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("CompactEmbedded of an open store: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, after, err := store.CompactEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted a file of 40 records of 256 KiB, 39 pruned: %d bytes -> %d", before, after)
	if before < 10<<20 || after*4 > before {
		t.Fatalf("compacted from %d to %d bytes, want a file of 10 MiB or more shrunk 4 times", before, after)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != after {
		t.Fatalf("file after compaction: %v, %v; want %d bytes", fi, err, after)
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("the temporary copy is left: %v", err)
	}
	if err := store.CheckEmbeddedFile(path); err != nil {
		t.Fatalf("consistency check of the compacted file: %v", err)
	}
	s, err = store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.GetActivation(ctx, batch[39].ID)
	if err != nil || len(a.Output) != 256<<10+2 {
		t.Fatalf("the activation left: %d bytes, %v", len(a.Output), err)
	}
	if _, err := s.GetModule(ctx, store.DefaultModule); err != nil {
		t.Fatal(err)
	}
}

func TestCompactEmbeddedRefusesForeignFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err })
	db.Close()
	if _, _, err := store.CompactEmbedded(path); err == nil || !strings.Contains(err.Error(), "not a Wisp store") {
		t.Fatalf("CompactEmbedded of a foreign file: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "x.db")
	if _, _, err := store.CompactEmbedded(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("CompactEmbedded of a missing file: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatal("CompactEmbedded created the missing file")
	}
}
