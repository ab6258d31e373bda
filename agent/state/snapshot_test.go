package state

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/wispfn/wisp/protocol"
)

// TestReadSnapshot: a running agent's file is locked (ErrLocked after the
// timeout); once closed, ReadSnapshot reads its identity, desired set,
// code and outbox without changing it, and Backlog agrees while it runs.
func TestReadSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	if _, err := ReadSnapshot(path, 100*time.Millisecond, 5); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no file: %v", err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	code := []byte("\x00asm\x01\x00\x00\x00")
	d := digestOf(code)
	if err := s.PutCode(d, code); err != nil {
		t.Fatal(err)
	}
	if err := s.SetIdentity(Identity{AgentID: "ag_1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDesired([]protocol.DesiredFunction{{Module: "m", Name: "f", Digest: d, LocalTopics: []string{"t/#"}}}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"01A", "01B", "01C"}
	for i, id := range ids {
		e := &protocol.OutboxEntry{ActivationID: id, Module: "m", Function: "f", Source: "local-api", StartedUnixUS: uint64(1000 + i)}
		if err := s.AppendOutbox(e); err != nil {
			t.Fatal(err)
		}
	}
	live, err := s.Backlog(2)
	if err != nil || live.Count != 3 || live.OldestUnixUS != 1000 || live.Bytes == 0 || len(live.Newest) != 2 || live.Newest[0].ActivationID != "01C" {
		t.Fatalf("Backlog = %+v, %v", live, err)
	}
	start := time.Now()
	if _, err := ReadSnapshot(path, 200*time.Millisecond, 5); !errors.Is(err, ErrLocked) {
		t.Fatalf("ReadSnapshot of a file in use: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ErrLocked after %v, want about the timeout", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := ReadSnapshot(path, time.Second, 2)
	if err != nil {
		t.Fatal(err)
	}
	if snap.AgentID != "ag_1" || len(snap.Desired) != 1 || snap.Desired[0].LocalTopics[0] != "t/#" || len(snap.Digests) != 1 || snap.Digests[0] != d {
		t.Errorf("snapshot = %+v", snap)
	}
	if snap.Outbox.Count != 3 || snap.Outbox.Bytes != live.Bytes || snap.Outbox.OldestUnixUS != 1000 ||
		len(snap.Outbox.Newest) != 2 || snap.Outbox.Newest[0].ActivationID != "01C" || snap.Outbox.Newest[1].ActivationID != "01B" {
		t.Errorf("snapshot outbox = %+v", snap.Outbox)
	}
	// Read only: the file opens as before, with the same outbox.
	s = open(t, path)
	if n := s.OutboxLen(); n != 3 {
		t.Errorf("outbox after the snapshot: %d entries", n)
	}
}
