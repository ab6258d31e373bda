package timers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/cron"
)

// Functions is what the timers read of the store.
type Functions interface {
	GetFunction(ctx context.Context, module, name string) (store.Function, error)
	ListFunctions(ctx context.Context) ([]store.Function, error)
}

// Claimer decides which controller runs a tick (see the package doc):
// Claim returns true for exactly one caller per (key, scheduled).
type Claimer interface {
	Claim(ctx context.Context, key string, scheduled time.Time) (bool, error)
}

// Config configures a Runner. Functions and Dispatcher are required.
type Config struct {
	Functions  Functions
	Dispatcher invoke.Dispatcher
	// Claimer, when set, is asked before each run (issue 15); nil: every
	// tick is this controller's.
	Claimer    Claimer
	Registerer prometheus.Registerer // nil: metrics are not registered
	Logger     *slog.Logger
	// Now and Grace are cron.Config's (tests); zero: its defaults.
	Now   func() time.Time
	Grace time.Duration
}

type target struct{ module, function string }

// Runner runs the cloud timers of the stored functions. Sync says which
// (after each change); Run runs them.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	set     *cron.Set
	metrics *metrics

	mu      sync.Mutex
	targets map[string]target // timer key -> function
}

// New returns a Runner; it does no I/O.
func New(cfg Config) (*Runner, error) {
	if cfg.Functions == nil || cfg.Dispatcher == nil {
		return nil, errors.New("timers: Functions and Dispatcher are required")
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer), targets: map[string]target{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	set, err := cron.NewSet(cron.Config{Fire: r.fire, Observe: r.metrics.observe, Now: cfg.Now, Grace: cfg.Grace})
	if err != nil {
		return nil, err
	}
	r.set = set
	return r, nil
}

// Key names the i-th event of module/function as a timer.
func Key(module, function string, i int) string {
	return fmt.Sprintf("%s/%s#%d", module, function, i)
}

// cloudTimers returns the cloud timers of fns, and the function each key
// runs. A function whose stored settings are unreadable has none.
func cloudTimers(fns []store.Function) ([]cron.Timer, map[string]target) {
	var out []cron.Timer
	targets := map[string]target{}
	for _, fn := range fns {
		if fn.Unreadable != nil {
			continue
		}
		for i, e := range fn.Spec.Events {
			if e.Type != fnspec.EventTimer || e.Params.Local {
				continue
			}
			sched, ok := e.Schedule()
			if !ok {
				continue
			}
			k := Key(fn.Module, fn.Name, i)
			out = append(out, cron.Timer{Key: k, Spec: e.Params.Cron + "|" + e.Params.Every, Schedule: sched})
			targets[k] = target{fn.Module, fn.Name}
		}
	}
	return out, targets
}

// Sync makes the running timers those of the stored functions.
func (r *Runner) Sync(ctx context.Context) error {
	fns, err := r.cfg.Functions.ListFunctions(ctx)
	if err != nil {
		return fmt.Errorf("listing functions for timers: %w", err)
	}
	ts, targets := cloudTimers(fns)
	r.mu.Lock()
	defer r.mu.Unlock() // syncs take turns: an older list never wins
	r.targets = targets
	r.set.Sync(ts)
	r.metrics.timers.Set(float64(len(ts)))
	return nil
}

// Run runs the timers until ctx is done, then lets running invocations
// finish (cron.DefaultDrainTimeout).
func (r *Runner) Run(ctx context.Context) error {
	err := r.set.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Args is a tick's args: its scheduled time.
func Args(scheduled time.Time) json.RawMessage {
	b, _ := json.Marshal(struct {
		Scheduled string `json:"scheduled"`
	}{scheduled.UTC().Format(time.RFC3339)})
	return b
}

func (r *Runner) fire(ctx context.Context, key string, scheduled time.Time) {
	r.mu.Lock()
	tg, ok := r.targets[key]
	r.mu.Unlock()
	if !ok {
		return // removed since
	}
	if r.cfg.Claimer != nil {
		mine, err := r.cfg.Claimer.Claim(ctx, key, scheduled)
		if err != nil || !mine {
			if err != nil {
				r.log.Warn("claiming a timer tick", "module", tg.module, "function", tg.function, "scheduled", scheduled, "err", err)
			}
			r.metrics.skips.WithLabelValues(skipClaimed).Inc()
			return
		}
	}
	fn, err := r.cfg.Functions.GetFunction(ctx, tg.module, tg.function)
	if errors.Is(err, store.ErrNotFound) {
		return // deleted; the next Sync drops the timer
	}
	if err == nil {
		var req invoke.Request
		if req, err = invoke.ForFunction(fn, Args(scheduled), invoke.SourceTimer); err == nil {
			_, err = r.cfg.Dispatcher.Invoke(ctx, req)
		}
	}
	if err != nil {
		r.metrics.runs.WithLabelValues(runError).Inc()
		r.log.Warn("timer run failed", "module", tg.module, "function", tg.function, "scheduled", scheduled, "err", err)
		return
	}
	r.metrics.runs.WithLabelValues(runOK).Inc()
}
