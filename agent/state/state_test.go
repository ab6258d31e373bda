package state

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

func open(t *testing.T, path string) *State {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("consistency check: %v", err)
		}
		s.Close()
	})
	return s
}

func TestCodeAndIdentitySurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	code := []byte("\x00asm\x01\x00\x00\x00")
	d := digestOf(code)
	if err := s.PutCode(d, code); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCode(d, []byte("other bytes")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	id := Identity{AgentID: "ag_1", Credential: []byte("secret"), Controller: []byte{1, 2, 3}}
	if err := s.SetIdentity(id); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	got, err := s.Code(d)
	if err != nil || string(got) != string(code) {
		t.Fatalf("Code: %q %v", got, err)
	}
	if gotID, _ := s.Identity(); gotID.AgentID != "ag_1" || string(gotID.Credential) != "secret" || !slices.Equal(gotID.Controller, []byte{1, 2, 3}) {
		t.Fatalf("identity %+v", gotID)
	}
	if ds, _ := s.Digests(); !slices.Equal(ds, []string{d}) || !s.HasCode(d) {
		t.Fatalf("digests %v", ds)
	}
	if err := s.DeleteCode(d, "sha256:absent"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Code(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	open(t, path)
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestFreshIdentityIsEmpty(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	id, err := s.Identity()
	if err != nil || id.AgentID != "" || id.Credential != nil {
		t.Fatalf("%+v %v", id, err)
	}
}

func TestDesiredSet(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	fs := []protocol.DesiredFunction{{Module: "_", Name: "b", Digest: "sha256:2"}, {Module: "_", Name: "a", Digest: "sha256:1", LocalTopics: []string{"x/y"},
		Timers: []protocol.Timer{{Cron: "*/5 * * * *"}, {EveryMS: 1000}}}}
	if err := s.SetDesired(fs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Desired()
	if err != nil || len(got) != 2 || got[0].Name != "a" || got[0].LocalTopics[0] != "x/y" ||
		!slices.Equal(got[0].Timers, fs[1].Timers) || got[1].Timers != nil {
		t.Fatalf("%+v %v", got, err)
	}
	if f, ok := s.DesiredFunction("_", "b"); !ok || f.Digest != "sha256:2" {
		t.Fatalf("lookup: %+v %v", f, ok)
	}
	if err := s.SetDesired(fs[:1]); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.DesiredFunction("_", "a"); ok {
		t.Fatal("a replaced set kept a function it no longer has")
	}
}

func TestOutboxGroupCommitAndAck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = activationid.New(time.Now())
	}
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.AppendOutbox(&protocol.OutboxEntry{ActivationID: ids[i], Module: "_", Function: "f", Output: []byte(`{}`)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s.Close()

	s = open(t, path) // what AppendOutbox returned for survives a reopen
	if n := s.OutboxLen(); n != 300 {
		t.Fatalf("outbox has %d entries, want 300", n)
	}
	first, err := s.Outbox(100)
	if err != nil || len(first) != 100 {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(first, func(a, b protocol.OutboxEntry) int { return strings.Compare(a.ActivationID, b.ActivationID) }) {
		t.Fatal("outbox not oldest first")
	}
	var acked []string
	for _, e := range first {
		acked = append(acked, e.ActivationID)
	}
	if err := s.AckOutbox(acked...); err != nil {
		t.Fatal(err)
	}
	if n := s.OutboxLen(); n != 200 {
		t.Fatalf("after ack: %d", n)
	}
	if err := s.AppendOutbox(&protocol.OutboxEntry{}); err == nil {
		t.Fatal("entry without id accepted")
	}
}

func BenchmarkAppendOutbox(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "agent.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	e := protocol.OutboxEntry{Module: "_", Function: "hello", Output: []byte(`{"payload":"Hello Ada!"}`)}
	// The baseline: one entry per bbolt transaction, as the outbox was
	// written before the journal (two fsyncs each).
	b.Run("bbolt-tx", func(b *testing.B) {
		for b.Loop() {
			e.ActivationID = activationid.New(time.Now())
			r := outboxReq{entry: e.Append(nil), id: e.ActivationID}
			if err := s.db.Update(func(tx *bolt.Tx) error { return putBatch(tx, []outboxReq{r}) }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unsynced", func(b *testing.B) {
		for b.Loop() {
			e.ActivationID = activationid.New(time.Now())
			if err := s.AppendOutboxUnsynced(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			e.ActivationID = activationid.New(time.Now())
			if err := s.AppendOutbox(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Space per activation of a hello call: the encoded entry, and what
	// bbolt's outbox leaves hold per entry (key, value, element header).
	b.Run("bytes", func(b *testing.B) {
		s, err := Open(filepath.Join(b.TempDir(), "agent.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		e := protocol.OutboxEntry{Module: "_", Function: "hello", Source: "local-mqtt", Digest: "sha256:" + strings.Repeat("ab", 32),
			Output: []byte(`{"payload":"Hello Ada!"}`), StartedUnixUS: uint64(time.Now().UnixMicro()), DurationUS: 42}
		for b.Loop() {
			for range 1000 {
				e.ActivationID = activationid.New(time.Now())
				if err := s.AppendOutboxUnsynced(&e); err != nil {
					b.Fatal(err)
				}
			}
		}
		s.journal.flush()
		b.ReportMetric(float64(len(e.Append(nil))), "entry-bytes")
		s.db.View(func(tx *bolt.Tx) error {
			st := tx.Bucket(bucketOutbox).Stats()
			b.ReportMetric(float64(st.LeafInuse)/float64(st.KeyN), "bbolt-bytes/entry")
			return nil
		})
	})
	b.Run("parallel-64", func(b *testing.B) {
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			e := e
			for pb.Next() {
				e.ActivationID = activationid.New(time.Now())
				if err := s.AppendOutbox(&e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func TestSeenKeysAreWrittenWithTheEntry(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	key := []byte("0123456789abcdef0123456789abcdef")
	if _, ok := s.Seen(key); ok {
		t.Fatal("unknown key seen")
	}
	id := activationid.New(time.Now())
	if err := s.AppendOutboxKeyed(&protocol.OutboxEntry{ActivationID: id}, key); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Seen(key); !ok || got != id {
		t.Fatalf("Seen = %q %v, want %s", got, ok, id)
	}
	// Acknowledging the entry keeps the key: a redelivery after the drain
	// must still be recognised.
	if err := s.AckOutbox(id); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Seen(key); !ok {
		t.Fatal("key forgotten when the entry was acknowledged")
	}
}

// TestDesiredConfigSurvivesReopen: a function's env and allowlist are kept
// with the desired set, so a restarted agent without its controller still
// runs the function with them.
func TestDesiredConfigSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.DesiredFunction{Module: "m", Name: "f", Digest: "sha256:1",
		Env: []string{"A=1", "B=two words"}, AllowHosts: []string{"*.example.com", "127.0.0.1:8080"}}
	if err := s.SetDesired([]protocol.DesiredFunction{want}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	got, ok := s.DesiredFunction("m", "f")
	if !ok || !slices.Equal(got.Env, want.Env) || !slices.Equal(got.AllowHosts, want.AllowHosts) {
		t.Fatalf("after reopen: %+v %v, want %+v", got, ok, want)
	}
}
