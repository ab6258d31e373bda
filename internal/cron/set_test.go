package cron

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// recorder keeps what a Set did.
type recorder struct {
	mu       sync.Mutex
	fired    []time.Time
	outcomes map[string]int
}

func (r *recorder) fire(ctx context.Context, key string, at time.Time) {
	r.mu.Lock()
	r.fired = append(r.fired, at)
	r.mu.Unlock()
}

func (r *recorder) observe(key, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes == nil {
		r.outcomes = map[string]int{}
	}
	r.outcomes[outcome]++
}

func (r *recorder) snapshot() ([]time.Time, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.outcomes {
		out[k] = v
	}
	return append([]time.Time(nil), r.fired...), out
}

// clock is a wall clock that tests can jump while the bubble's time runs.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time       { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) jump(d time.Duration) { c.offset.Add(int64(d)) }
func every(t *testing.T, d time.Duration) Interval {
	t.Helper()
	iv, err := Every(d)
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

func startSet(t *testing.T, cfg Config, timers ...Timer) (*Set, func()) {
	t.Helper()
	s, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Sync(timers)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		<-done
	}
}

func TestSetFiresOnSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		_, stop := startSet(t, Config{Fire: r.fire, Observe: r.observe}, Timer{Key: "a", Spec: "1s", Schedule: every(t, time.Second)})
		start := time.Now()
		time.Sleep(10*time.Second + time.Millisecond)
		stop()
		fired, out := r.snapshot()
		if len(fired) != 10 || out[Fired] != 10 || out[Missed] != 0 || out[Overlap] != 0 {
			t.Fatalf("fired %d, outcomes %v", len(fired), out)
		}
		for i, at := range fired {
			if want := start.Truncate(time.Second).Add(time.Duration(i+1) * time.Second); !at.Equal(want) {
				t.Fatalf("tick %d at %s, want %s", i, at, want)
			}
		}
	})
}

func TestSetCronTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		c, err := Parse("*/2 * * * *")
		if err != nil {
			t.Fatal(err)
		}
		_, stop := startSet(t, Config{Fire: r.fire, Observe: r.observe}, Timer{Key: "c", Spec: c.String(), Schedule: c})
		time.Sleep(10 * time.Minute)
		stop()
		fired, _ := r.snapshot()
		if len(fired) != 5 {
			t.Fatalf("fired %d times in 10 minutes, want 5", len(fired))
		}
		for _, at := range fired {
			if at.Minute()%2 != 0 || at.Second() != 0 {
				t.Fatalf("fired at %s", at)
			}
		}
	})
}

// A forward jump of the wall clock (the machine slept, NTP stepped it) is
// no burst: the missed ticks are skipped, one counted, and the timer goes
// on from the new time.
func TestSetClockJumpForwardNoBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		var clk clock
		_, stop := startSet(t, Config{Fire: r.fire, Observe: r.observe, Now: clk.now}, Timer{Key: "a", Spec: "1s", Schedule: every(t, time.Second)})
		time.Sleep(3*time.Second + time.Millisecond)
		clk.jump(time.Hour)
		time.Sleep(3 * time.Second)
		stop()
		fired, out := r.snapshot()
		if out[Missed] != 1 || len(fired) != 5 {
			t.Fatalf("fired %d, outcomes %v; want 5 fired (3 before, 2 after) and 1 missed", len(fired), out)
		}
		if gap := fired[3].Sub(fired[2]); gap < time.Hour {
			t.Fatalf("no jump between ticks: %s", gap)
		}
	})
}

// A backward jump plans again from the new time: the timer keeps firing
// every second instead of waiting for the old time to come back.
func TestSetClockJumpBackward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		var clk clock
		_, stop := startSet(t, Config{Fire: r.fire, Observe: r.observe, Now: clk.now}, Timer{Key: "a", Spec: "1s", Schedule: every(t, time.Second)})
		time.Sleep(2*time.Second + time.Millisecond)
		clk.jump(-time.Hour)
		time.Sleep(3 * time.Second)
		stop()
		fired, out := r.snapshot()
		if len(fired) < 4 || out[Missed] != 0 {
			t.Fatalf("fired %d, outcomes %v", len(fired), out)
		}
	})
}

// A late wake within Grace runs the tick once; beyond Grace it is missed.
// Either way never more than one run per wake.
func TestSetLateWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		var clk clock
		_, stop := startSet(t, Config{Fire: r.fire, Observe: r.observe, Now: clk.now, Grace: 2 * time.Second},
			Timer{Key: "a", Spec: "10s", Schedule: every(t, 10*time.Second)})
		time.Sleep(5 * time.Second)
		clk.jump(time.Second) // the tick at 10s wakes at 11s: run
		time.Sleep(10 * time.Second)
		clk.jump(3 * time.Second) // the tick at 20s wakes at 23s: missed
		time.Sleep(7 * time.Second)
		stop()
		fired, out := r.snapshot()
		if len(fired) != 1 || out[Missed] != 1 {
			t.Fatalf("fired %d, outcomes %v", len(fired), out)
		}
	})
}

func TestSetOverlapSkips(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		var running, maxRunning atomic.Int32
		slow := func(ctx context.Context, key string, at time.Time) {
			n := running.Add(1)
			if n > maxRunning.Load() {
				maxRunning.Store(n)
			}
			r.fire(ctx, key, at)
			time.Sleep(2500 * time.Millisecond) // spans two more ticks
			running.Add(-1)
		}
		_, stop := startSet(t, Config{Fire: slow, Observe: r.observe}, Timer{Key: "a", Spec: "1s", Schedule: every(t, time.Second)})
		time.Sleep(9*time.Second + time.Millisecond)
		stop()
		fired, out := r.snapshot()
		if maxRunning.Load() != 1 {
			t.Fatalf("%d runs of one timer at once", maxRunning.Load())
		}
		if len(fired) != 3 || out[Overlap] != 6 {
			t.Fatalf("fired %d, outcomes %v; want 3 fired, 6 overlaps", len(fired), out)
		}
	})
}

func TestSetSyncChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		byKey := map[string]int{}
		fire := func(ctx context.Context, key string, at time.Time) {
			mu.Lock()
			byKey[key]++
			mu.Unlock()
		}
		s, stop := startSet(t, Config{Fire: fire}, Timer{Key: "a", Spec: "1s", Schedule: every(t, time.Second)})
		time.Sleep(2*time.Second + time.Millisecond)
		s.Sync([]Timer{{Key: "b", Spec: "1s", Schedule: every(t, time.Second)}, {Key: "nil"}})
		if s.Len() != 1 {
			t.Fatalf("Len %d", s.Len())
		}
		time.Sleep(3 * time.Second)
		s.Sync([]Timer{{Key: "b", Spec: "2s", Schedule: every(t, 2*time.Second)}})
		time.Sleep(4 * time.Second)
		stop()
		s.Sync([]Timer{{Key: "c", Spec: "1s", Schedule: every(t, time.Second)}}) // after Run: nothing
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if byKey["a"] != 2 || byKey["b"] != 5 || byKey["c"] != 0 {
			t.Fatalf("runs by key %v, want a 2, b 3+2", byKey)
		}
	})
}

// Run waits for running Fires, and cancels them after DrainTimeout.
func TestSetRunDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var finished, cancelled atomic.Bool
		fire := func(ctx context.Context, key string, at time.Time) {
			select {
			case <-ctx.Done():
				cancelled.Store(true)
			case <-time.After(time.Hour):
			}
			finished.Store(true)
		}
		_, stop := startSet(t, Config{Fire: fire, DrainTimeout: 3 * time.Second}, Timer{Key: "a", Spec: "1s", Schedule: every(t, time.Second)})
		time.Sleep(1500 * time.Millisecond)
		began := time.Now()
		stop()
		if !finished.Load() || !cancelled.Load() || time.Since(began) != 3*time.Second {
			t.Fatalf("finished %v cancelled %v after %s", finished.Load(), cancelled.Load(), time.Since(began))
		}
	})
}

func TestSetRunTwice(t *testing.T) {
	s, err := NewSet(Config{Fire: func(context.Context, string, time.Time) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx)
	if err := s.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
	if _, err := NewSet(Config{}); err == nil {
		t.Fatal("no Fire accepted")
	}
}
