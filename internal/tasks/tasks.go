// Package tasks owns background goroutines: a Group starts them with its
// own context, and Stop cancels that context and waits for every one of
// them, so a component's shutdown returns only when nothing it started is
// still running. The controller's API and fleet use it.
//
// It must never start a goroutine after Stop began, nor let Stop return
// while one it started still runs.
package tasks

import (
	"context"
	"sync"
)

// Group is a set of owned goroutines. The zero Group is not usable: build
// one with New.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// New returns a Group whose goroutines get a context derived from parent
// (its values, not its cancellation: only Stop ends them).
func New(parent context.Context) *Group {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &Group{ctx: ctx, cancel: cancel}
}

// Go runs fn in a goroutine of the group with the group's context. It
// returns false, and does not run fn, once Stop has begun.
func (g *Group) Go(fn func(ctx context.Context)) bool {
	done, ok := g.Enter()
	if !ok {
		return false
	}
	go func() {
		defer done()
		fn(g.ctx)
	}()
	return true
}

// Enter counts a goroutine the caller already runs (a timer's callback,
// say) as the group's until it calls done. ok is false once Stop has
// begun; the caller must then not do the work.
func (g *Group) Enter() (done func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return nil, false
	}
	g.wg.Add(1)
	return g.wg.Done, true
}

// Context is the group's context: done once Stop began.
func (g *Group) Context() context.Context { return g.ctx }

// Stop cancels the group's context, refuses new goroutines and waits for
// those it runs. It may be called more than once.
func (g *Group) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
