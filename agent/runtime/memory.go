package runtime

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// capAllocator backs an instance's linear memory with a region of the
// runtime's memoryPool and refuses to grow it past the cap: memory.grow then
// returns -1 in the guest, and the runtime knows the cap was hit.
type capAllocator struct {
	limit uint64
	hit   bool
	pool  *memoryPool
	// dense is its module's hint: its last call touched most of the memory
	// it was given (see memoryPool), or nil.
	dense *atomic.Bool
}

func (a *capAllocator) wantDense() bool { return a.dense != nil && a.dense.Load() }

var _ experimental.MemoryAllocator = (*capAllocator)(nil)

func (a *capAllocator) Allocate(capacity, _ uint64) experimental.LinearMemory {
	m := &capMemory{a: a, hold: &memoryHold{reg: a.pool.get(min(capacity, a.limit), a.wantDense())}}
	m.watch()
	return m
}

// watch makes sure a mapped region that wazero never frees (an instance
// dropped without Close) is released once nothing can reach its memory: a
// mapping is not garbage collected.
func (m *capMemory) watch() {
	if m.watched || !m.hold.reg.mapped {
		return
	}
	m.watched = true
	m.hold.pool = m.a.pool
	runtime.AddCleanup(m, releaseUnfreed, m.hold)
}

func releaseUnfreed(h *memoryHold) {
	if !h.freed.Load() {
		h.pool.release(h.reg)
	}
}

// capMemory is one instance's linear memory.
type capMemory struct {
	a    *capAllocator
	hold *memoryHold
	// used is the longest slice of the region wazero was given: no guest
	// can have touched a byte past it.
	used    uint64
	watched bool
}

// memoryHold is what the cleanup of a capMemory needs: its region, and
// whether Free already gave it back.
type memoryHold struct {
	pool  *memoryPool
	reg   *region
	freed atomic.Bool
}

func (m *capMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit {
		m.a.hit = true
		return nil
	}
	reg := m.hold.reg
	if size <= uint64(len(reg.b)) {
		m.used = max(m.used, size)
		return reg.b[:size]
	}
	// Grow geometrically (within the cap) so a guest growing page by page
	// costs amortised O(n) copying, not O(n²).
	nr := m.a.pool.get(min(max(size, 2*uint64(len(reg.b))), m.a.limit), m.a.wantDense())
	copy(nr.b, reg.b[:m.used])
	m.a.pool.put(reg, m.used)
	m.hold.reg, m.used = nr, size
	m.watch()
	return nr.b[:size]
}

// Free is called by wazero when the instance is closed, after its last call
// returned or, for a module stopped by its deadline, once the guest noticed
// and unwound: the region is no longer reachable by guest code and may be
// reset and reused.
func (m *capMemory) Free() {
	if m.hold.freed.Swap(true) {
		return
	}
	dense := m.a.pool.put(m.hold.reg, m.used)
	if m.a.dense != nil && dense != m.a.dense.Load() {
		m.a.dense.Store(dense)
	}
}

// memoryPool recycles linear-memory regions of power-of-two sizes from 64 KiB
// to 4 MiB: allocating a fresh zeroed buffer per invocation made garbage
// collection the main cost of a small function. A region is reset when it
// comes back, so no guest ever sees another's data, and the reset costs what
// the guests touched, not the size of their memory (resetRegion: on Linux a
// region is an anonymous mapping, and only the pages the kernel says were
// touched are cleared). Finding those pages costs about as much per page as
// clearing it, so a region whose pages were mostly touched (dense) is
// cleared without asking, and kept apart for the modules whose calls touch
// most of their memory (a module's last call decides; sparse regions stay
// sparse for the others). A pool belongs to one Runtime and keeps at most
// maxIdleRegions idle regions per size and kind; the others are released.
type memoryPool struct {
	mu   sync.Mutex
	idle [2][poolClasses][]*region // [sparse, dense][class]

	// pages reads this process's page map (Linux), once opened.
	pages pageMap

	// wholeReset makes the pool work as it did before issue 16, for
	// same-run baselines in benchmarks: regions are Go slices, and each
	// is cleared whole when it comes back. Set before the first call.
	wholeReset bool
}

// region is one linear-memory buffer.
type region struct {
	b      []byte // the whole region: len == cap
	pooled bool   // its size is a pool class
	mapped bool   // b is an anonymous mapping of its own (Linux)
	// dense: most of the pages of b that guests were given are mapped
	// (once touched, a page stays mapped), so a reset clears the bytes
	// used without reading the page map.
	dense bool
}

const (
	poolMinShift = 16 // 64 KiB, one wasm page
	poolClasses  = 7  // up to 4 MiB
	// maxIdleRegions bounds the idle regions kept per size: enough for
	// the instances of a busy agent's usual concurrency to find one.
	maxIdleRegions = 8
)

func poolClass(n uint64) (int, bool) {
	if n == 0 {
		n = 1
	}
	shift := bits.Len64(n - 1)
	if shift < poolMinShift {
		shift = poolMinShift
	}
	c := shift - poolMinShift
	return c, c < poolClasses
}

// get returns a zeroed region of at least n bytes, dense or not as asked
// when the pool has one of each.
func (p *memoryPool) get(n uint64, dense bool) *region {
	c, ok := poolClass(n)
	if !ok {
		return newRegion(int(roundUp(max(n, 1), uint64(hostPageSize))), false)
	}
	p.mu.Lock()
	kind := 0
	if dense {
		kind = 1
	}
	for _, k := range [2]int{kind, 1 - kind} {
		if idle := p.idle[k][c]; len(idle) > 0 {
			r := idle[len(idle)-1]
			idle[len(idle)-1] = nil
			p.idle[k][c] = idle[:len(idle)-1]
			p.mu.Unlock()
			return r
		}
	}
	p.mu.Unlock()
	if p.wholeReset {
		return &region{b: make([]byte, 1<<(c+poolMinShift)), pooled: true}
	}
	return newRegion(1<<(c+poolMinShift), true)
}

// put resets the first used bytes of r (no guest touched the rest since its
// last reset) and keeps it for reuse, or releases it. It reports whether r
// is dense.
func (p *memoryPool) put(r *region, used uint64) bool {
	if !r.pooled {
		p.release(r)
		return false
	}
	if p.wholeReset {
		clear(r.b)
	} else {
		p.resetRegion(r, int(min(used, uint64(len(r.b)))))
	}
	dense := r.dense
	c, _ := poolClass(uint64(len(r.b)))
	kind := 0
	if dense {
		kind = 1
	}
	p.mu.Lock()
	if len(p.idle[kind][c]) < maxIdleRegions {
		p.idle[kind][c] = append(p.idle[kind][c], r)
		p.mu.Unlock()
		return dense
	}
	p.mu.Unlock()
	p.release(r)
	return dense
}

// release gives r back to the system (or to the Go heap).
func (p *memoryPool) release(r *region) {
	freeRegion(r)
}

// drain releases every idle region.
func (p *memoryPool) drain() {
	p.mu.Lock()
	var all []*region
	for k := range p.idle {
		for c := range p.idle[k] {
			all = append(all, p.idle[k][c]...)
			p.idle[k][c] = nil
		}
	}
	p.mu.Unlock()
	for _, r := range all {
		p.release(r)
	}
	p.pages.close()
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }
