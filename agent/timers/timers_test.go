package timers

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/internal/cron"
	"github.com/wispfn/wisp/protocol"
)

type invoker struct {
	mu    sync.Mutex
	ticks []Tick
	fail  map[string]error // function -> error
	rec   map[string]bool  // function -> recorded despite the error
}

func (i *invoker) invoke(ctx context.Context, t Tick) (bool, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.ticks = append(i.ticks, t)
	if err := i.fail[t.Function]; err != nil {
		return i.rec[t.Function], err
	}
	return true, nil
}

func (i *invoker) byFunction() map[string]int {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := map[string]int{}
	for _, t := range i.ticks {
		out[t.Function]++
	}
	return out
}

func start(t *testing.T, inv *invoker, fs []protocol.DesiredFunction) (*Timers, func()) {
	t.Helper()
	tm, err := New(Config{Invoke: inv.invoke})
	if err != nil {
		t.Fatal(err)
	}
	tm.Sync(fs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tm.Run(ctx) }()
	return tm, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestLocalTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inv := &invoker{fail: map[string]error{"broken": errors.New("trap"), "nocode": errors.New("no code")}, rec: map[string]bool{"broken": true}}
		fs := []protocol.DesiredFunction{
			{Module: "m", Name: "sec", Timers: []protocol.Timer{{EveryMS: 1000}}},
			{Module: "m", Name: "min", Timers: []protocol.Timer{{Cron: "* * * * *"}, {EveryMS: 30000}}},
			{Module: "m", Name: "broken", Timers: []protocol.Timer{{EveryMS: 10000}}},
			{Module: "m", Name: "nocode", Timers: []protocol.Timer{{EveryMS: 20000}}},
			// A hostile or newer controller's timers are ignored.
			{Module: "m", Name: "bad", Timers: []protocol.Timer{{}, {Cron: "* * *"}, {EveryMS: 10}, {EveryMS: 1 << 62}, {Cron: "* * * * *", EveryMS: 1000}}},
			{Module: "m", Name: "none"},
		}
		tm, stop := start(t, inv, fs)
		time.Sleep(time.Minute + time.Millisecond)
		stop()
		got := inv.byFunction()
		if got["sec"] != 60 || got["min"] != 3 || got["broken"] != 6 || got["nocode"] != 3 || got["bad"] != 0 {
			t.Fatalf("runs %v", got)
		}
		if n := testutil.ToFloat64(tm.metrics.runs.WithLabelValues(runOK)); n != 63 {
			t.Fatalf("ok %v", n)
		}
		if n := testutil.ToFloat64(tm.metrics.runs.WithLabelValues(runError)); n != 6 {
			t.Fatalf("error %v", n)
		}
		if n := testutil.ToFloat64(tm.metrics.runs.WithLabelValues(runNotRun)); n != 3 {
			t.Fatalf("not_run %v", n)
		}
		if n := testutil.ToFloat64(tm.metrics.timers); n != 5 {
			t.Fatalf("timers %v", n)
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		for _, tk := range inv.ticks {
			var args struct{ Scheduled time.Time }
			if err := json.Unmarshal(tk.Args, &args); err != nil || !args.Scheduled.Equal(tk.Scheduled) {
				t.Fatalf("args %s for %s (%v)", tk.Args, tk.Scheduled, err)
			}
		}
	})
}

// A restarted agent (new Timers, same desired set) after downtime runs
// none of the ticks it missed: its first run is the next tick after its
// start.
func TestLocalTimersNoCatchUpAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inv := &invoker{}
		fs := []protocol.DesiredFunction{{Module: "m", Name: "f", Timers: []protocol.Timer{{EveryMS: 1000}}}}
		_, stop := start(t, inv, fs)
		time.Sleep(5*time.Second + time.Millisecond)
		stop()
		time.Sleep(time.Minute)
		_, stop = start(t, inv, fs)
		time.Sleep(500 * time.Millisecond)
		if n := inv.byFunction()["f"]; n != 5 {
			t.Fatalf("%d runs right after the restart, want the 5 before", n)
		}
		time.Sleep(2 * time.Second)
		stop()
		inv.mu.Lock()
		defer inv.mu.Unlock()
		seen := map[time.Time]bool{}
		for _, tk := range inv.ticks {
			if seen[tk.Scheduled] {
				t.Fatalf("tick %s ran twice", tk.Scheduled)
			}
			seen[tk.Scheduled] = true
		}
		if len(inv.ticks) != 7 {
			t.Fatalf("%d runs, want 7", len(inv.ticks))
		}
	})
}

func TestSchedule(t *testing.T) {
	for _, tt := range []struct {
		in protocol.Timer
		ok bool
	}{
		{protocol.Timer{Cron: "*/5 * * * *"}, true}, {protocol.Timer{EveryMS: 1000}, true},
		{protocol.Timer{}, false}, {protocol.Timer{EveryMS: 999}, false}, {protocol.Timer{EveryMS: ^uint64(0)}, false},
		{protocol.Timer{Cron: "x"}, false}, {protocol.Timer{Cron: "* * * * *", EveryMS: 1000}, false},
	} {
		_, err := Schedule(tt.in)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, cron.ErrInvalid)) {
			t.Errorf("Schedule(%+v) = %v", tt.in, err)
		}
	}
}
