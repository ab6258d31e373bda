// Package gctune gives a process whose live heap is small a fixed headroom
// of heap growth between collections, rather than the runtime's default of
// as much again as the live heap (GOGC=100).
//
// The agent is such a process: its live heap is a few MiB, and every
// invocation allocates a guest instance whose linear memory lives on the
// Go heap, so at GOGC=100 it collected every few MiB allocated and the
// collector took about 40 % of its CPU under load (issue 16,
// docs/decisions.md). With a headroom the next collection comes when the
// heap has grown by that many bytes, a bound in bytes rather than a factor:
// once the live heap is as large as the headroom the default applies, so
// the process never holds more than about the headroom beyond what GOGC=100
// would let it hold. GOMEMLIMIT, when set, still caps the heap.
//
// It must stay standard library only.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// maxPercent bounds the GOGC the tuner sets.
const maxPercent = 1000

// heapMinimum is the runtime's smallest heap goal at GOGC=100; it scales
// with GOGC (runtime/mgcpacer.go), so a large GOGC on a tiny live heap would
// otherwise give a goal far beyond the headroom.
const heapMinimum = 4 << 20

// Start keeps GOGC at the percentage that lets the heap grow by headroom
// bytes past the live heap (never below 100, at most maxPercent),
// re-evaluated after every collection, until stop is called (which restores
// GOGC=100). It does nothing, and stop does nothing, when headroom is 0 or
// the GOGC environment variable is set: the operator decides then.
func Start(headroom uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set || headroom == 0 {
		return func() {}
	}
	t := &tuner{headroom: headroom, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
	t.arm()
	return func() {
		if !t.stopped.Swap(true) {
			debug.SetGCPercent(100)
		}
	}
}

type tuner struct {
	headroom uint64
	sample   []metrics.Sample // used by tune only, which runs on one goroutine at a time
	percent  int
	stopped  atomic.Bool
}

// sentinel is an object whose finalizer runs once per collection. It is
// larger than the runtime's tiny-allocation size, whose finalizers may
// never run.
type sentinel struct{ _ [32]byte }

// arm makes the next collection call tune (and arm again).
func (t *tuner) arm() {
	s := new(sentinel)
	runtime.SetFinalizer(s, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.tune()
		t.arm()
	})
}

func (t *tuner) tune() {
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	if p := Percent(live, t.headroom); p != t.percent && !t.stopped.Load() {
		debug.SetGCPercent(p)
		t.percent = p
	}
}

// Percent is the GOGC that makes the heap goal about live+headroom: at
// least 100, at most maxPercent, and small enough that the runtime's
// minimum heap goal (which grows with GOGC) stays within live+headroom.
func Percent(live, headroom uint64) int {
	p := uint64(maxPercent)
	if live > 0 {
		p = min(p, headroom*100/live)
	}
	p = min(p, (live+headroom)*100/heapMinimum)
	return int(max(p, 100))
}
