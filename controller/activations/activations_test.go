package activations

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

// countingStore records batches.
type countingStore struct {
	mu      sync.Mutex
	batches []int
	ids     map[string]bool
}

func (c *countingStore) RecordActivations(_ context.Context, as []store.ActivationWithSinks) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, len(as))
	n := 0
	for _, a := range as {
		if !c.ids[a.ID] {
			c.ids[a.ID] = true
			n++
		}
	}
	return n, nil
}

func (c *countingStore) GetFunction(context.Context, string, string) (store.Function, error) {
	return store.Function{Spec: fnspec.Spec{Sinks: []fnspec.Sink{{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://c/db"}}}}}, nil
}

func TestDispatchedBatchesAndWaits(t *testing.T) {
	st := &countingStore{ids: map[string]bool{}}
	kicked := 0
	r := New(Config{Store: st, Recorded: func() { kicked++ }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for range 100 { // fire and forget: batched by the linger
		r.Dispatched(ctx, store.Activation{ID: activationid.New(time.Now())}, nil, false)
	}
	// A waiting caller returns only once its record is committed.
	id := activationid.New(time.Now())
	if err := r.Dispatched(ctx, store.Activation{ID: id}, []fnspec.Sink{{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://couch/db"}}}, true); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	committed := st.ids[id]
	batches := len(st.batches)
	st.mu.Unlock()
	if !committed {
		t.Fatal("Dispatched(wait) returned before its record was committed")
	}
	if batches > 20 {
		t.Errorf("101 records took %d commits; the linger should batch them", batches)
	}
	// Queued records are flushed on shutdown.
	r.Dispatched(ctx, store.Activation{ID: "last"}, nil, false)
	cancel()
	<-done
	if !st.ids["last"] {
		t.Fatal("a queued record was dropped at shutdown")
	}
}

func TestOutboxRecordsOnceWithSinks(t *testing.T) {
	s, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := New(Config{Store: s})
	e := protocol.OutboxEntry{ActivationID: activationid.New(time.Now()), Module: "_", Function: "gone", Source: "local-api", Output: []byte(`{}`), StartedUnixUS: 1}
	for range 2 { // a replay
		if err := r.Outbox(context.Background(), "ag_1", []protocol.OutboxEntry{e}); err != nil {
			t.Fatal(err)
		}
	}
	as, err := s.ListActivations(context.Background(), store.ActivationFilter{})
	if err != nil || len(as) != 1 || as[0].Agent != "ag_1" || as[0].Source != "local-api" {
		t.Fatalf("%+v %v", as, err)
	}
}

// blockingStore holds every commit until release is closed.
type blockingStore struct {
	countingStore
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) RecordActivations(ctx context.Context, as []store.ActivationWithSinks) (int, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.countingStore.RecordActivations(ctx, as)
}

// TestDispatchedWaitsForRoom: with the store stuck, the queue holds at most
// maxQueued records; the next caller waits for room until its context ends,
// and records queued meanwhile are all committed once the store moves.
func TestDispatchedWaitsForRoom(t *testing.T) {
	st := &blockingStore{countingStore: countingStore{ids: map[string]bool{}}, entered: make(chan struct{}, 1), release: make(chan struct{})}
	r := New(Config{Store: st})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	r.Dispatched(ctx, store.Activation{ID: "first"}, nil, false)
	<-st.entered // Run holds "first" in a stuck commit
	for i := range maxQueued {
		if err := r.Dispatched(ctx, store.Activation{ID: fmt.Sprint("q", i)}, nil, false); err != nil {
			t.Fatal(err)
		}
	}
	full, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if err := r.Dispatched(full, store.Activation{ID: "over"}, nil, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dispatched on a full queue: %v, want it to wait until its context ended", err)
	}
	later := make(chan error, 1)
	go func() { later <- r.Dispatched(ctx, store.Activation{ID: "later"}, nil, false) }()
	close(st.release)
	if err := <-later; err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := len(st.ids); n != maxQueued+2 {
		t.Fatalf("%d records committed, want %d", n, maxQueued+2)
	}
	if st.ids["over"] {
		t.Fatal("a record whose caller gave up was committed")
	}
}
