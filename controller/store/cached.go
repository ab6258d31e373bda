package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wispfn/wisp/cache"
)

// Cached is a Store whose hot reads — a token's subject, a function's
// record, a module's owner: three round trips on every invocation — are
// answered from memory (issue 16, point 5), and so is the list of every
// function each change makes the controller read (cached_list.go; issue
// 16, point 7). It is built over a store that
// is a ChangeFeed and is kept true by it:
//
//   - A change this controller makes through Cached drops what it touched
//     before the call returns, so this controller never reads its own
//     writes stale.
//   - A change another controller makes (or an operator in SQL) reaches
//     this one through the feed, within the feed's latency (a few
//     milliseconds on one Postgres); a reconnection of the feed reports
//     ChangeAll, which empties the caches.
//   - Entries are re-read after MaxAge whatever the feed says, so a feed
//     that is broken and not yet noticed bounds staleness to MaxAge.
//   - A read that began before an invalidation never stores what it read
//     (a generation counter), so a slow read cannot put back a stale entry.
//
// Only what was found is cached: unknown tokens and functions go to the
// store each time, so a flood of made-up tokens cannot fill the cache or
// evict real entries (the API's rate limits bound that flood). Values are
// shared between callers and must not be modified.
//
// Every other method is the wrapped store's. A type assertion for an
// optional interface (Pinger, SecretStore, ChangeFeed) must be made on the
// wrapped store (Unwrap), not on Cached.
type Cached struct {
	Store
	gen     atomic.Uint64 // bumped by every invalidation
	maxAge  time.Duration
	mu      sync.Mutex // serialises invalidations with the generation
	tokens  *cache.LRU[string, cachedEntry[Subject]]
	fns     *cache.LRU[string, cachedEntry[Function]]
	owners  *cache.LRU[string, cachedEntry[string]]
	list    cachedList // every function (cached_list.go)
	hits    atomic.Uint64
	misses  atomic.Uint64
	started atomic.Bool
}

type cachedEntry[V any] struct {
	v  V
	at time.Time
}

// CacheLimits bound a Cached: entries per cache, and their age.
type CacheLimits struct {
	// Entries bounds each of the three caches; default 100,000.
	Entries int
	// MaxAge is the longest an entry is served without a re-read;
	// default 30s.
	MaxAge time.Duration
}

// NewCached wraps st. Its caches serve nothing until Watch has been
// called and the feed has connected (reported its first ChangeAll).
func NewCached(st Store, l CacheLimits) *Cached {
	if l.Entries <= 0 {
		l.Entries = 100_000
	}
	if l.MaxAge <= 0 {
		l.MaxAge = 30 * time.Second
	}
	lim := cache.Limits{Entries: l.Entries}
	return &Cached{Store: st, maxAge: l.MaxAge,
		tokens: cache.NewLRU[string, cachedEntry[Subject]](lim, nil),
		fns:    cache.NewLRU[string, cachedEntry[Function]](lim, nil),
		owners: cache.NewLRU[string, cachedEntry[string]](lim, nil)}
}

// Unwrap returns the wrapped store.
func (c *Cached) Unwrap() Store { return c.Store }

// Watch keeps the caches true from the wrapped store's change feed until
// ctx is done. A store that is no ChangeFeed is never cached: Watch
// returns at once and every read goes to it.
func (c *Cached) Watch(ctx context.Context) error {
	feed, ok := c.Store.(ChangeFeed)
	if !ok {
		return nil
	}
	defer c.started.Store(false)
	return feed.WatchChanges(ctx, func(ch Change) {
		c.Invalidate(ch)
		if ch.Kind == ChangeAll {
			c.started.Store(true)
		}
	})
}

// Invalidate drops what ch may have changed.
func (c *Cached) Invalidate(ch Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	c.list.mark(ch)
	switch ch.Kind {
	case ChangeFunctions:
		if ch.Key == "" {
			c.fns.Purge()
		} else {
			c.fns.Remove(ch.Key)
		}
	case ChangeModules:
		// A rename or delete takes the module's functions along.
		c.fns.Purge()
		if ch.Key == "" {
			c.owners.Purge()
		} else {
			c.owners.Remove(ch.Key)
		}
	case ChangeSubjects:
		// Keyed by subject name, cached by token hash: drop them all
		// (subjects change rarely). A deleted subject's modules went to
		// nobody (DeleteSubject refuses while it owns one), so owners stay.
		c.tokens.Purge()
	case ChangeAll:
		c.tokens.Purge()
		c.fns.Purge()
		c.owners.Purge()
	}
}

// CacheStats are a Cached's hits and misses (reads that went to the store).
type CacheStats struct{ Hits, Misses uint64 }

// Stats returns the hits and misses so far.
func (c *Cached) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// cachedRead answers key from lru when it holds a fresh entry, else reads
// it from the store and keeps it when found and no invalidation came
// meanwhile.
func cachedRead[V any](c *Cached, lru *cache.LRU[string, cachedEntry[V]], key string, read func() (V, error)) (V, error) {
	if !c.started.Load() {
		return read()
	}
	if e, ok := lru.Get(key); ok && time.Since(e.at) < c.maxAge {
		c.hits.Add(1)
		return e.v, nil
	}
	c.misses.Add(1)
	gen := c.gen.Load()
	now := time.Now()
	v, err := read()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.gen.Load() == gen {
		lru.Add(key, cachedEntry[V]{v: v, at: now}, 1)
	}
	c.mu.Unlock()
	return v, nil
}

// SubjectByTokenHash is the store's, from the cache when it can.
func (c *Cached) SubjectByTokenHash(ctx context.Context, hash []byte) (Subject, error) {
	return cachedRead(c, c.tokens, string(hash), func() (Subject, error) { return c.Store.SubjectByTokenHash(ctx, hash) })
}

// GetFunction is the store's, from the cache when it can.
func (c *Cached) GetFunction(ctx context.Context, module, name string) (Function, error) {
	return cachedRead(c, c.fns, module+"/"+name, func() (Function, error) { return c.Store.GetFunction(ctx, module, name) })
}

// ModuleOwner is the store's, from the cache when it can.
func (c *Cached) ModuleOwner(ctx context.Context, name string) (string, error) {
	return cachedRead(c, c.owners, name, func() (string, error) { return c.Store.ModuleOwner(ctx, name) })
}

// The writes that change what is cached drop it, whether or not they
// succeed (a failed write may have committed before its error).

func (c *Cached) CreateModule(ctx context.Context, name, owner string) error {
	defer c.Invalidate(Change{Kind: ChangeModules, Key: name})
	return c.Store.CreateModule(ctx, name, owner)
}

func (c *Cached) RenameModule(ctx context.Context, from, to string) error {
	defer c.Invalidate(Change{Kind: ChangeModules, Key: to})
	defer c.Invalidate(Change{Kind: ChangeModules, Key: from})
	return c.Store.RenameModule(ctx, from, to)
}

func (c *Cached) DeleteModule(ctx context.Context, name string) error {
	defer c.Invalidate(Change{Kind: ChangeModules, Key: name})
	return c.Store.DeleteModule(ctx, name)
}

func (c *Cached) CreateFunction(ctx context.Context, fn Function, code []byte) (Function, error) {
	defer c.Invalidate(Change{Kind: ChangeFunctions, Key: fn.Module + "/" + fn.Name})
	return c.Store.CreateFunction(ctx, fn, code)
}

func (c *Cached) UpdateFunction(ctx context.Context, fn Function, code []byte) (Function, error) {
	defer c.Invalidate(Change{Kind: ChangeFunctions, Key: fn.Module + "/" + fn.Name})
	return c.Store.UpdateFunction(ctx, fn, code)
}

func (c *Cached) DeleteFunction(ctx context.Context, module, name string) (Function, error) {
	defer c.Invalidate(Change{Kind: ChangeFunctions, Key: module + "/" + name})
	return c.Store.DeleteFunction(ctx, module, name)
}

func (c *Cached) CreateSubject(ctx context.Context, s Subject) (Subject, error) {
	defer c.Invalidate(Change{Kind: ChangeSubjects, Key: s.Name})
	return c.Store.CreateSubject(ctx, s)
}

func (c *Cached) RotateSubjectToken(ctx context.Context, name string, hash []byte) error {
	defer c.Invalidate(Change{Kind: ChangeSubjects, Key: name})
	return c.Store.RotateSubjectToken(ctx, name, hash)
}

func (c *Cached) DeleteSubject(ctx context.Context, name string) error {
	defer c.Invalidate(Change{Kind: ChangeSubjects, Key: name})
	return c.Store.DeleteSubject(ctx, name)
}
