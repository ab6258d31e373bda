package store

import (
	"context"
	"sync"
)

// The embedded store's change feed is in process: every method that
// changed what a ChangeKind names reports it after its transaction
// committed (changed), and each watcher gets it from its own queue.
//
// A writer never waits for a watcher: it appends to each watcher's queue
// under a short lock and wakes it. A queue holds each distinct change
// once, at most maxQueuedChanges of them; past that it collapses into one
// ChangeAll, so a slow watcher costs a re-read, never a lost change.

// maxQueuedChanges bounds a watcher's queue of distinct changes.
const maxQueuedChanges = 1024

// changeHub is the embedded store's set of watchers.
type changeHub struct {
	mu       sync.Mutex
	watchers map[*changeQueue]struct{}
}

// changeQueue is one watcher's changes not yet delivered.
type changeQueue struct {
	mu      sync.Mutex
	pending []Change
	seen    map[Change]struct{}
	wake    chan struct{} // capacity 1: a send never blocks
}

// changed reports committed changes to every watcher.
func (h *changeHub) changed(cs ...Change) {
	if len(cs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for q := range h.watchers {
		q.add(cs)
	}
}

func (q *changeQueue) add(cs []Change) {
	q.mu.Lock()
	for _, c := range cs {
		if _, dup := q.seen[c]; dup {
			continue
		}
		if len(q.pending) == 1 && q.pending[0].Kind == ChangeAll {
			break // everything is re-read anyway
		}
		if len(q.pending) >= maxQueuedChanges || c.Kind == ChangeAll {
			q.pending = append(q.pending[:0], Change{Kind: ChangeAll})
			clear(q.seen)
			q.seen[Change{Kind: ChangeAll}] = struct{}{}
			break
		}
		q.pending = append(q.pending, c)
		q.seen[c] = struct{}{}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take empties the queue and returns what it held.
func (q *changeQueue) take() []Change {
	q.mu.Lock()
	defer q.mu.Unlock()
	cs := q.pending
	q.pending = nil
	clear(q.seen)
	return cs
}

// WatchChanges implements ChangeFeed: fn gets ChangeAll first (there is
// no connection to lose; the watcher reads its state once), then the
// changes this process commits, in commit order, until ctx is done.
func (e *Embedded) WatchChanges(ctx context.Context, fn func(Change)) error {
	q := &changeQueue{seen: map[Change]struct{}{}, wake: make(chan struct{}, 1)}
	h := &e.changes
	h.mu.Lock()
	if h.watchers == nil {
		h.watchers = map[*changeQueue]struct{}{}
	}
	h.watchers[q] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watchers, q)
		h.mu.Unlock()
	}()
	fn(Change{Kind: ChangeAll})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.wake:
		}
		for _, c := range q.take() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fn(c)
		}
	}
}
