// Package cache holds Wisp's bounded in-memory caches: an LRU keyed by
// content digest, shared by the agent (compiled modules) and the controller
// (wasm bytes).
//
// It imports only the standard library and must stay that way: both binaries
// link it, and the agent must stay small.
//
// # Bounds
//
// An LRU is bounded twice: by entry count and by total cost (bytes, usually).
// Adding an entry that alone costs more than the cost bound is refused, so
// one huge value never flushes the whole cache. Evicted values are handed to
// the OnEvict callback, outside the cache's lock, so a callback may release
// resources (close a compiled module) without blocking readers.
package cache

import (
	"container/list"
	"sync"
)

// LRU is a least-recently-used cache safe for concurrent use. The zero value
// is not usable; build one with NewLRU.
type LRU[K comparable, V any] struct {
	mu      sync.Mutex
	maxLen  int
	maxCost int64
	cost    int64
	order   *list.List // front = most recently used
	items   map[K]*list.Element
	onEvict func(K, V)
	hits    uint64
	misses  uint64
	evicted uint64
}

type entry[K comparable, V any] struct {
	key  K
	val  V
	cost int64
}

// Limits bounds an LRU. A zero field means unbounded on that axis.
type Limits struct {
	Entries int
	Cost    int64
}

// NewLRU returns an empty cache. onEvict, if not nil, is called for every
// value that leaves the cache by eviction, Remove or Purge.
func NewLRU[K comparable, V any](l Limits, onEvict func(K, V)) *LRU[K, V] {
	return &LRU[K, V]{
		maxLen:  l.Entries,
		maxCost: l.Cost,
		order:   list.New(),
		items:   make(map[K]*list.Element),
		onEvict: onEvict,
	}
}

// Get returns the value for key and marks it most recently used.
func (c *LRU[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		c.hits++
		return el.Value.(*entry[K, V]).val, true
	}
	c.misses++
	var zero V
	return zero, false
}

// Peek returns the value for key without touching its recency or the stats.
func (c *LRU[K, V]) Peek(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		return el.Value.(*entry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Add inserts or replaces key. It reports false, and stores nothing, when
// cost alone exceeds the cost bound. A replaced value is passed to onEvict.
func (c *LRU[K, V]) Add(key K, val V, cost int64) bool {
	if c.maxCost > 0 && cost > c.maxCost {
		return false
	}
	var out []*entry[K, V]
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		old := el.Value.(*entry[K, V])
		out = append(out, &entry[K, V]{key: old.key, val: old.val, cost: old.cost})
		c.cost += cost - old.cost
		old.val, old.cost = val, cost
		c.order.MoveToFront(el)
	} else {
		c.items[key] = c.order.PushFront(&entry[K, V]{key: key, val: val, cost: cost})
		c.cost += cost
	}
	for (c.maxLen > 0 && c.order.Len() > c.maxLen) || (c.maxCost > 0 && c.cost > c.maxCost) {
		el := c.order.Back()
		e := el.Value.(*entry[K, V])
		c.order.Remove(el)
		delete(c.items, e.key)
		c.cost -= e.cost
		c.evicted++
		out = append(out, e)
	}
	c.mu.Unlock()
	c.emit(out)
	return true
}

// Remove drops key, calling onEvict for its value. It reports whether key was present.
func (c *LRU[K, V]) Remove(key K) bool {
	c.mu.Lock()
	el, ok := c.items[key]
	var out []*entry[K, V]
	if ok {
		e := el.Value.(*entry[K, V])
		c.order.Remove(el)
		delete(c.items, key)
		c.cost -= e.cost
		out = append(out, e)
	}
	c.mu.Unlock()
	c.emit(out)
	return ok
}

// Purge empties the cache, calling onEvict for every value.
func (c *LRU[K, V]) Purge() {
	c.mu.Lock()
	out := make([]*entry[K, V], 0, c.order.Len())
	for el := c.order.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*entry[K, V]))
	}
	c.order.Init()
	clear(c.items)
	c.cost = 0
	c.mu.Unlock()
	c.emit(out)
}

// Keys returns the keys from most to least recently used.
func (c *LRU[K, V]) Keys() []K {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]K, 0, c.order.Len())
	for el := c.order.Front(); el != nil; el = el.Next() {
		keys = append(keys, el.Value.(*entry[K, V]).key)
	}
	return keys
}

// Stats is a snapshot of a cache's size and counters.
type Stats struct {
	Entries   int
	Cost      int64
	Hits      uint64
	Misses    uint64
	Evictions uint64
}

// Stats returns the current size and counters.
func (c *LRU[K, V]) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Entries: c.order.Len(), Cost: c.cost, Hits: c.hits, Misses: c.misses, Evictions: c.evicted}
}

func (c *LRU[K, V]) emit(out []*entry[K, V]) {
	if c.onEvict == nil {
		return
	}
	for _, e := range out {
		c.onEvict(e.key, e.val)
	}
}
