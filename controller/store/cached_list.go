package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// cachedList is Cached's copy of every function (ListFunctions), for the
// controller's reactions to a change — desired sets, cloud timers, cloud
// events — that each listed every function on every change: at 6,000
// functions, three reads decoding 6,000 records each, per change (issue
// 16, point 7). It is kept true like the other caches, by key:
//
//   - a change of one function (ChangeFunctions with a key) marks that
//     key; the next list reads only the marked keys (GetFunction) and
//     patches a copy of the list;
//   - a change that may touch many (a module renamed or deleted,
//     ChangeFunctions without a key, ChangeAll) or MaxAge passing makes
//     the next list read everything again.
//
// A list that read a key before it was marked again keeps the mark: the
// next list reads it again (a change is never lost, as with the other
// caches' generation). Lists take turns (mu), so one store read serves
// every caller that waits. The list is shared: callers must not modify it.
type cachedList struct {
	mu  sync.Mutex // one refresh at a time; guards fns and at
	fns []Function // sorted by module then name
	at  time.Time  // when everything was read
	// marked and all are guarded by Cached.mu (set by Invalidate).
	marked map[string]bool
	all    bool
}

// mark records what ch may have changed in the list; Cached.mu is held.
func (l *cachedList) mark(ch Change) {
	switch {
	case ch.Kind == ChangeFunctions && ch.Key != "":
		if l.marked == nil {
			l.marked = map[string]bool{}
		}
		l.marked[ch.Key] = true
	case ch.Kind == ChangeFunctions, ch.Kind == ChangeModules, ch.Kind == ChangeAll:
		l.all, l.marked = true, nil
	}
}

// ListFunctions is the store's, from memory when it can: only the
// functions changed since the last list are read. The slice is shared
// between callers and must not be modified.
func (c *Cached) ListFunctions(ctx context.Context) ([]Function, error) {
	if !c.started.Load() {
		return c.Store.ListFunctions(ctx)
	}
	l := &c.list
	l.mu.Lock()
	defer l.mu.Unlock()
	c.mu.Lock()
	marked, all := l.marked, l.all || l.fns == nil || time.Since(l.at) >= c.maxAge
	l.marked, l.all = nil, false
	c.mu.Unlock()
	if all {
		at := time.Now()
		fns, err := c.Store.ListFunctions(ctx)
		if err != nil {
			c.remark(nil, true)
			return nil, err
		}
		c.misses.Add(1)
		slices.SortFunc(fns, compareFunctions)
		l.fns, l.at = fns, at
		return fns, nil
	}
	if len(marked) == 0 {
		c.hits.Add(1)
		return l.fns, nil
	}
	c.misses.Add(1)
	fns := slices.Clone(l.fns)
	for key := range marked {
		module, name, _ := strings.Cut(key, "/")
		fn, err := c.Store.GetFunction(ctx, module, name)
		i, found := slices.BinarySearchFunc(fns, Function{Module: module, Name: name}, compareFunctions)
		switch {
		case errors.Is(err, ErrNotFound):
			if found {
				fns = slices.Delete(fns, i, i+1)
			}
		case err != nil:
			c.remark(marked, false)
			return nil, err
		case found:
			fns[i] = fn
		default:
			fns = slices.Insert(fns, i, fn)
		}
	}
	l.fns = fns
	return fns, nil
}

// remark marks keys again (or everything) after a refresh that failed.
func (c *Cached) remark(keys map[string]bool, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range keys {
		c.list.mark(Change{Kind: ChangeFunctions, Key: k})
	}
	if all {
		c.list.mark(Change{Kind: ChangeAll})
	}
}

func compareFunctions(a, b Function) int {
	return cmp.Or(cmp.Compare(a.Module, b.Module), cmp.Compare(a.Name, b.Name))
}
