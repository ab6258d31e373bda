package cron

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Timer is one timer of a Set.
type Timer struct {
	// Key identifies the timer; Fire gets it. Two timers of a Set never
	// share a key.
	Key string
	// Spec is what the timer was made from (its expression, say): a Sync
	// that changes it restarts the timer.
	Spec     string
	Schedule Schedule
}

// Outcomes a Set reports to Config.Observe, one per tick.
const (
	Fired   = "fired"   // Fire was started
	Overlap = "overlap" // the previous run of the timer still ran: skipped
	Missed  = "missed"  // the tick's time passed more than Grace ago: skipped
)

// Defaults of Config.
const (
	DefaultGrace        = 2 * time.Second
	DefaultDrainTimeout = 10 * time.Second
)

// Config configures a Set. Fire is required.
type Config struct {
	// Fire runs one tick of the timer key, scheduled at scheduled. It runs
	// in a goroutine of the Set; ctx is done when the Set's drain ends.
	Fire func(ctx context.Context, key string, scheduled time.Time)
	// Observe, when set, is told each tick's outcome (metrics).
	Observe func(key, outcome string)
	// Now is the wall clock; default time.Now (tests shift it to jump).
	Now func() time.Time
	// Grace is how late a tick may still run; default DefaultGrace.
	Grace time.Duration
	// DrainTimeout is how long Run waits for running Fires after its
	// context is done before it cancels theirs; default DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// Set runs timers (see the package doc for the missed-tick and overlap
// rules). Sync says which; Run runs them. Every goroutine it starts, the
// Fires included, has ended when Run returns. Safe for concurrent use.
type Set struct {
	cfg Config

	fireCtx    context.Context
	cancelFire context.CancelFunc
	loops      sync.WaitGroup
	fires      sync.WaitGroup

	mu      sync.Mutex
	want    map[string]Timer
	running map[string]*loop
	runCtx  context.Context // nil until Run; set while it runs
	closed  bool
}

type loop struct {
	spec   string
	cancel context.CancelFunc
}

// NewSet returns a Set; it starts nothing.
func NewSet(cfg Config) (*Set, error) {
	if cfg.Fire == nil {
		return nil, errors.New("cron: Config.Fire is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Set{cfg: cfg, fireCtx: ctx, cancelFire: cancel, want: map[string]Timer{}, running: map[string]*loop{}}, nil
}

// Sync makes the Set's timers exactly timers: it stops those no longer
// wanted or whose Spec changed and starts the new ones (once Run runs). A
// timer left as it was keeps its plan. Timers without a Schedule are
// ignored. After Run returned it does nothing.
func (s *Set) Sync(timers []Timer) {
	want := make(map[string]Timer, len(timers))
	for _, t := range timers {
		if t.Schedule != nil {
			want[t.Key] = t
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.want = want
	if s.runCtx != nil {
		s.apply()
	}
}

// Len is the number of timers the Set holds.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.want)
}

// apply starts and stops loops to match want; s.mu is held.
func (s *Set) apply() {
	for key, l := range s.running {
		if t, ok := s.want[key]; !ok || t.Spec != l.spec {
			l.cancel()
			delete(s.running, key)
		}
	}
	for key, t := range s.want {
		if _, ok := s.running[key]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.runCtx)
		s.running[key] = &loop{spec: t.Spec, cancel: cancel}
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.run(ctx, t)
		}()
	}
}

// Run runs the timers until ctx is done, then waits for the running
// Fires (DrainTimeout, then their context is cancelled and it waits for
// them still). It may be called once.
func (s *Set) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil || s.closed {
		s.mu.Unlock()
		return errors.New("cron: Set.Run called twice")
	}
	s.runCtx = ctx
	s.apply()
	s.mu.Unlock()

	<-ctx.Done()
	s.mu.Lock()
	s.closed = true
	for _, l := range s.running {
		l.cancel()
	}
	s.mu.Unlock()
	s.loops.Wait() // no Fire starts after this
	drained := make(chan struct{})
	go func() {
		s.fires.Wait()
		close(drained)
	}()
	t := time.NewTimer(s.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		s.cancelFire()
		<-drained
	}
	s.cancelFire()
	return ctx.Err()
}

// run is one timer's loop: wait for the next tick, then run it, skip it
// as missed or skip it as an overlap, and plan the next from now.
func (s *Set) run(ctx context.Context, t Timer) {
	var busy atomic.Bool
	next := t.Schedule.Next(s.cfg.Now())
	for !next.IsZero() {
		wait := time.NewTimer(next.Sub(s.cfg.Now()))
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
		}
		now := s.cfg.Now()
		switch {
		case now.Before(next):
			// Woken early: the wall clock went back (or drifted). Plan
			// again from the new time; no run.
		case now.Sub(next) > s.cfg.Grace:
			s.observe(t.Key, Missed)
		case !busy.CompareAndSwap(false, true):
			s.observe(t.Key, Overlap)
		default:
			s.fires.Add(1)
			scheduled := next
			go func() {
				defer s.fires.Done()
				defer busy.Store(false)
				s.cfg.Fire(s.fireCtx, t.Key, scheduled)
			}()
			s.observe(t.Key, Fired)
		}
		next = t.Schedule.Next(now)
	}
}

func (s *Set) observe(key, outcome string) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(key, outcome)
	}
}
