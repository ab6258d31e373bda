package store_test

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/store/storetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openEmbedded is the storetest.Opener of Embedded: a file in a fresh
// temporary directory, closed and consistency-checked on cleanup.
func openEmbedded(t *testing.T) (store.Store, func(*testing.T) store.Store) {
	path := filepath.Join(t.TempDir(), "wisp.db")
	return openEmbeddedAt(t, path)
}

func openEmbeddedAt(t *testing.T, path string) (store.Store, func(*testing.T) store.Store) {
	var opened []*store.Embedded
	open := func(t *testing.T) store.Store {
		t.Helper()
		s, err := store.OpenEmbedded(path, testLogger(t))
		if err != nil {
			t.Fatalf("OpenEmbedded: %v", err)
		}
		opened = append(opened, s)
		return s
	}
	// Registered after t.TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		for _, s := range opened {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if err := store.CheckEmbeddedFile(path); err != nil {
			t.Errorf("consistency check of %s failed:\n%v", path, err)
		}
	})
	return open(t), open
}

func TestEmbeddedContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, openEmbedded)
}

func TestEmbeddedLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	openEmbeddedAt(t, path)

	// bbolt locks with flock, which also excludes a second open in this process.
	start := time.Now()
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err == nil {
		s.Close()
		t.Fatal("second OpenEmbedded of an open file succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second OpenEmbedded: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("ErrLocked took %s", d)
	}
}

func TestEmbeddedMetaVersion(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckEmbeddedFile(path); err != nil {
		t.Fatalf("new file: %v", err)
	}

	setVersion := func(v uint64) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket([]byte("meta"))
			if got := binary.BigEndian.Uint64(meta.Get([]byte("version"))); got != 1 && v != 1 {
				t.Errorf("meta/version = %d, want 1", got)
			}
			return meta.Put([]byte("version"), binary.BigEndian.AppendUint64(nil, v))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setVersion(2)
	if s, err := store.OpenEmbedded(path, testLogger(t)); err == nil {
		s.Close()
		t.Fatal("OpenEmbedded accepted a file of schema version 2")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("OpenEmbedded of version 2: %v, want an error saying the file is newer", err)
	}
	setVersion(1)
	s, err = store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatalf("reopen after restoring version 1: %v", err)
	}
	s.Close()
}

func TestEmbeddedRefusesForeignFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something else"))
		return err
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := store.OpenEmbedded(path, testLogger(t)); err == nil {
		s.Close()
		t.Fatal("OpenEmbedded accepted a bbolt file that is not a Wisp store")
	}
}

// TestEmbeddedCheckCatchesBrokenRefs makes sure the cleanup check would see
// a reference-count bug, so that its silence in the other tests means something.
func TestEmbeddedCheckCatchesBrokenRefs(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	code, digest := storetest.Code("refs")
	if _, err := s.CreateFunction(t.Context(), store.Function{Module: "_", Name: "f", Digest: digest}, code); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("coderefs")).Put([]byte(digest), binary.BigEndian.AppendUint64(nil, 2))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CheckEmbeddedFile(path); err == nil || !strings.Contains(err.Error(), "coderefs") {
		t.Fatalf("CheckEmbeddedFile of a wrong reference count: %v", err)
	}
}

// TestEmbeddedReadsVersion1File opens a file written by schema version 1
// (testdata/embedded-v1.db, made by TestEmbeddedWriteV1Fixture) so that a
// change to the file format cannot go unnoticed.
func TestEmbeddedReadsVersion1File(t *testing.T) {
	t.Parallel()
	fixture, err := os.ReadFile(filepath.Join("testdata", "embedded-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wisp.db")
	if err := os.WriteFile(path, fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := openEmbeddedAt(t, path)
	ctx := t.Context()
	mods, err := s.ListModules(ctx)
	if err != nil || strings.Join(mods, ",") != "_,math" {
		t.Fatalf("ListModules = %v, %v", mods, err)
	}
	code, digest := storetest.Code("fixture")
	fn, err := s.GetFunction(ctx, "math", "add")
	if err != nil || fn.Digest != digest || fn.ABI != "funless-v1" || string(fn.Metadata) != `{"tag":"t"}` || fn.Created.IsZero() {
		t.Fatalf("GetFunction = %+v, %v", fn, err)
	}
	if got, err := s.Code(ctx, digest); err != nil || string(got) != string(code) {
		t.Fatalf("Code = %q, %v", got, err)
	}
	if sub, err := s.SubjectByTokenHash(ctx, []byte("fixture token hash")); err != nil || sub.Name != "admin" || !sub.Admin {
		t.Fatalf("SubjectByTokenHash = %+v, %v", sub, err)
	}
	if sc, err := s.GetScript(ctx, "app"); err != nil || string(sc.Source) != "- t:\n  - workers: \"*\"\n" {
		t.Fatalf("GetScript = %+v, %v", sc, err)
	}
}

// TestEmbeddedWriteV1Fixture rewrites testdata/embedded-v1.db when
// WISP_UPDATE_TESTDATA=1. Only do that when adding a fixture: the point of
// the file is that it was written by an older build.
func TestEmbeddedWriteV1Fixture(t *testing.T) {
	if os.Getenv("WISP_UPDATE_TESTDATA") != "1" {
		t.Skip("set WISP_UPDATE_TESTDATA=1 to rewrite testdata/embedded-v1.db")
	}
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	code, digest := storetest.Code("fixture")
	steps := []error{
		s.CreateModule(ctx, "math"),
		func() error {
			_, err := s.CreateFunction(ctx, store.Function{Module: "math", Name: "add", Digest: digest,
				ABI: "funless-v1", Metadata: []byte(`{"tag":"t"}`)}, code)
			return err
		}(),
		func() error {
			_, err := s.CreateSubject(ctx, store.Subject{Name: "admin", TokenHash: []byte("fixture token hash"), Admin: true})
			return err
		}(),
		func() error {
			_, err := s.PutScript(ctx, store.Script{Name: "app", Source: []byte("- t:\n  - workers: \"*\"\n")})
			return err
		}(),
		s.Close(),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join("testdata", "embedded-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, f); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
