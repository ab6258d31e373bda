package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{4 * mib, 16 * mib, 400},  // goal 20 MiB = live + headroom
		{16 * mib, 16 * mib, 100}, // the default from here on
		{64 * mib, 16 * mib, 100}, // never below it
		{8 * mib, 16 * mib, 200},
		{0, 16 * mib, 400},       // before any collection: minimum goal 16 MiB
		{1 * mib, 16 * mib, 425}, // the minimum goal, not 1600 %
		{100 << 10, 1 << 30, maxPercent},
	} {
		if got := Percent(c.live, c.headroom); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

// TestStartFollowsCollections: the tuner re-evaluates GOGC after
// collections: 100 while the live heap is past the headroom, more once it
// is small again; stop restores 100.
func TestStartFollowsCollections(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set: the tuner is off by design")
	}
	const headroom = 16 << 20
	stop := Start(headroom)
	defer stop()
	gogc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	// settle collects until the finalizer ran and GOGC satisfies ok.
	settle := func(ok func(int) bool) int {
		for range 50 {
			runtime.GC()
			time.Sleep(time.Millisecond) // the finalizer goroutine runs
			if p := gogc(); ok(p) {
				return p
			}
		}
		return gogc()
	}
	if p := settle(func(p int) bool { return p > 100 }); p <= 100 {
		t.Fatalf("GOGC = %d with a small live heap, want more than 100", p)
	}
	held := make([][]byte, 48)
	for i := range held {
		held[i] = make([]byte, 1<<20)
	}
	if p := settle(func(p int) bool { return p == 100 }); p != 100 {
		t.Errorf("GOGC = %d with a live heap of 48 MiB and a 16 MiB headroom, want 100", p)
	}
	runtime.KeepAlive(held)
	if p := settle(func(p int) bool { return p > 100 }); p <= 100 {
		t.Errorf("GOGC = %d once the live heap is small again, want more than 100", p)
	}
	stop()
	if p := gogc(); p != 100 {
		t.Errorf("GOGC = %d after stop, want 100", p)
	}
}
