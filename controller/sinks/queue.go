package sinks

import (
	"context"
	"sync"
	"time"
)

// Delivery is one (activation, sink) pair still to deliver.
type Delivery struct {
	ActivationID string // sortable, unique; the document _id
	Module       string
	Function     string
	SinkIndex    int    // position of the sink in the function's "sinks"
	Sink         Params // copied when the activation was recorded
	Output       []byte // the function's JSON output
	Time         time.Time
	Attempts     int // failed attempts so far
}

// Queue is the durable list of deliveries still to make. The controller's
// store implements it (recording an activation adds one delivery per sink
// of its function, in the same transaction); [MemQueue] is the in-memory
// implementation.
//
// A delivery is identified by (ActivationID, SinkIndex). Marking one that is
// not there (any more) is not an error.
type Queue interface {
	// Pending returns at most limit deliveries, oldest first, leaving out
	// those whose next attempt is in the future.
	Pending(ctx context.Context, limit int) ([]Delivery, error)
	// Delivered removes a delivery: its document is in the sink.
	Delivered(ctx context.Context, activationID string, sinkIndex int) error
	// Failed records a failed attempt: it increments Attempts, keeps err as
	// the last error and hides the delivery from Pending until next.
	Failed(ctx context.Context, activationID string, sinkIndex int, err string, next time.Time) error
}

var _ Queue = (*MemQueue)(nil)

// MemQueue is a [Queue] in memory, for tests and the embedded single-process
// controller (where a restart loses what it holds, as it loses the rest of
// that controller's memory). Pending is oldest first in the order of Add.
// Safe for concurrent use.
type MemQueue struct {
	mu      sync.Mutex
	now     func() time.Time
	byKey   map[deliveryKey]*memEntry
	order   []*memEntry // in Add order; delivered entries are compacted away lazily
	removed int         // delivered entries still in order
}

type deliveryKey struct {
	activation string
	sink       int
}

type memEntry struct {
	d       Delivery
	next    time.Time
	lastErr string
	gone    bool
}

// NewMemQueue returns an empty MemQueue.
func NewMemQueue() *MemQueue {
	return &MemQueue{now: time.Now, byKey: map[deliveryKey]*memEntry{}}
}

// Add queues deliveries and reports how many were new: one already queued
// (same activation and sink index) is left as it is, so adding a replayed
// activation again is harmless.
func (q *MemQueue) Add(ds ...Delivery) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, d := range ds {
		k := deliveryKey{d.ActivationID, d.SinkIndex}
		if _, ok := q.byKey[k]; ok {
			continue
		}
		e := &memEntry{d: d}
		q.byKey[k] = e
		q.order = append(q.order, e)
		n++
	}
	return n
}

// Len is the number of deliveries not yet delivered, including those waiting
// for their next attempt.
func (q *MemQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.byKey)
}

// LastError returns the last error recorded for a delivery and its attempts
// so far; ok is false when the delivery is not queued.
func (q *MemQueue) LastError(activationID string, sinkIndex int) (err string, attempts int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.byKey[deliveryKey{activationID, sinkIndex}]
	if !ok {
		return "", 0, false
	}
	return e.lastErr, e.d.Attempts, true
}

// Pending implements [Queue].
func (q *MemQueue) Pending(_ context.Context, limit int) ([]Delivery, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	var ds []Delivery
	for _, e := range q.order {
		if len(ds) >= limit {
			break
		}
		if e.gone || e.next.After(now) {
			continue
		}
		ds = append(ds, e.d)
	}
	return ds, nil
}

// Delivered implements [Queue].
func (q *MemQueue) Delivered(_ context.Context, activationID string, sinkIndex int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := deliveryKey{activationID, sinkIndex}
	e, ok := q.byKey[k]
	if !ok {
		return nil
	}
	delete(q.byKey, k)
	e.gone = true
	e.d.Output = nil
	q.removed++
	if q.removed > 64 && q.removed > len(q.order)/2 {
		kept := make([]*memEntry, 0, len(q.order)-q.removed)
		for _, e := range q.order {
			if !e.gone {
				kept = append(kept, e)
			}
		}
		q.order, q.removed = kept, 0
	}
	return nil
}

// Failed implements [Queue].
func (q *MemQueue) Failed(_ context.Context, activationID string, sinkIndex int, err string, next time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.byKey[deliveryKey{activationID, sinkIndex}]
	if !ok {
		return nil
	}
	e.d.Attempts++
	e.lastErr = err
	e.next = next
	return nil
}
