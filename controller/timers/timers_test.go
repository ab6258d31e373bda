package timers

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
)

type fakeStore struct {
	mu  sync.Mutex
	fns []store.Function
}

func (s *fakeStore) set(fns ...store.Function) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = fns
}

func (s *fakeStore) ListFunctions(context.Context) ([]store.Function, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Function(nil), s.fns...), nil
}

func (s *fakeStore) GetFunction(_ context.Context, module, name string) (store.Function, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range s.fns {
		if fn.Module == module && fn.Name == name {
			return fn, nil
		}
	}
	return store.Function{}, store.ErrNotFound
}

type fakeDispatcher struct {
	mu   sync.Mutex
	reqs []invoke.Request
	slow time.Duration
	err  error
}

func (d *fakeDispatcher) Invoke(ctx context.Context, req invoke.Request) (invoke.Result, error) {
	d.mu.Lock()
	d.reqs = append(d.reqs, req)
	d.mu.Unlock()
	time.Sleep(d.slow)
	return invoke.Result{Output: json.RawMessage(`{}`)}, d.err
}

func (d *fakeDispatcher) requests() []invoke.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]invoke.Request(nil), d.reqs...)
}

type claimNone struct{}

func (claimNone) Claim(context.Context, string, time.Time) (bool, error) { return false, nil }

func timerFn(name string, evs ...fnspec.Event) store.Function {
	return store.Function{Module: "m", Name: name, Digest: "sha256:00", Spec: fnspec.Spec{Events: evs}}
}

func every(d string, local bool) fnspec.Event {
	return fnspec.Event{Type: fnspec.EventTimer, Params: fnspec.EventParams{Every: d, Local: local}}
}

func run(t *testing.T, cfg Config) (*Runner, func()) {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// Cloud timers invoke through the dispatcher with source "timer" and
// their scheduled time as args; local timers and MQTT events are not
// the controller's.
func TestCloudTimersRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, disp := &fakeStore{}, &fakeDispatcher{}
		st.set(
			timerFn("cloud", every("1s", false), fnspec.Event{Type: fnspec.EventMQTT, Params: fnspec.EventParams{Host: "b", Port: 1883, Topic: "t"}}),
			timerFn("edge", every("1s", true)),
			store.Function{Module: "m", Name: "bad", Unreadable: fnspec.ErrInvalid, Spec: fnspec.Spec{Events: []fnspec.Event{every("1s", false)}}},
		)
		reg := prometheus.NewRegistry()
		r, stop := run(t, Config{Functions: st, Dispatcher: disp, Registerer: reg})
		time.Sleep(5*time.Second + time.Millisecond)
		// Removing the function stops its timer.
		st.set(timerFn("edge", every("1s", true)))
		if err := r.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		stop()
		reqs := disp.requests()
		if len(reqs) != 5 {
			t.Fatalf("%d runs in 5s, want 5", len(reqs))
		}
		seen := map[string]bool{}
		for _, req := range reqs {
			var args struct{ Scheduled time.Time }
			if err := json.Unmarshal(req.Args, &args); err != nil || req.Function != "cloud" || req.Source != invoke.SourceTimer || seen[string(req.Args)] {
				t.Fatalf("request %+v (%v)", req, err)
			}
			seen[string(req.Args)] = true
			if args.Scheduled.Nanosecond() != 0 || args.Scheduled.Location() != time.UTC {
				t.Fatalf("scheduled %s", args.Scheduled)
			}
		}
		if got := testutil.ToFloat64(r.metrics.runs.WithLabelValues(runOK)); got != 5 {
			t.Fatalf("runs ok %v", got)
		}
		if got := testutil.ToFloat64(r.metrics.timers); got != 0 {
			t.Fatalf("timers gauge %v after the removal", got)
		}
	})
}

func TestCloudTimerOverlapAndErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, disp := &fakeStore{}, &fakeDispatcher{slow: 1500 * time.Millisecond, err: invoke.ErrNoWorker}
		st.set(timerFn("slow", every("1s", false)))
		r, stop := run(t, Config{Functions: st, Dispatcher: disp})
		time.Sleep(6*time.Second + time.Millisecond)
		stop()
		if n := len(disp.requests()); n != 3 {
			t.Fatalf("%d runs, want 3", n)
		}
		if got := testutil.ToFloat64(r.metrics.skips.WithLabelValues(skipOverlap)); got != 3 {
			t.Fatalf("overlaps %v, want 3", got)
		}
		if got := testutil.ToFloat64(r.metrics.runs.WithLabelValues(runError)); got != 3 {
			t.Fatalf("errors %v, want 3", got)
		}
	})
}

// A Claimer that gives every tick to another controller: nothing runs.
func TestCloudTimerClaimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, disp := &fakeStore{}, &fakeDispatcher{}
		st.set(timerFn("f", every("1s", false)))
		r, stop := run(t, Config{Functions: st, Dispatcher: disp, Claimer: claimNone{}})
		time.Sleep(3*time.Second + time.Millisecond)
		stop()
		if n := len(disp.requests()); n != 0 {
			t.Fatalf("%d runs of claimed ticks", n)
		}
		if got := testutil.ToFloat64(r.metrics.skips.WithLabelValues(skipClaimed)); got != 3 {
			t.Fatalf("claimed %v, want 3", got)
		}
	})
}

// After downtime (the controller stopped for an hour), a new Runner does
// not catch up: its first run is the next tick after its start.
func TestCloudTimerNoCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, disp := &fakeStore{}, &fakeDispatcher{}
		fn := timerFn("f", fnspec.Event{Type: fnspec.EventTimer, Params: fnspec.EventParams{Cron: "*/10 * * * *"}})
		st.set(fn)
		_, stop := run(t, Config{Functions: st, Dispatcher: disp})
		time.Sleep(10*time.Minute + time.Second)
		stop()
		time.Sleep(time.Hour) // down
		_, stop = run(t, Config{Functions: st, Dispatcher: disp})
		time.Sleep(time.Second)
		if n := len(disp.requests()); n != 1 {
			t.Fatalf("%d runs right after the restart, want the one before", n)
		}
		time.Sleep(10 * time.Minute)
		stop()
		if n := len(disp.requests()); n != 2 {
			t.Fatalf("%d runs, want 2", n)
		}
	})
}
