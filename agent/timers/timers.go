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

	"github.com/wispfn/wisp/internal/cron"
	"github.com/wispfn/wisp/protocol"
)

// Tick is one run of a timer.
type Tick struct {
	Module, Function string
	Scheduled        time.Time
	// Args is the function's input: {"scheduled":"<RFC 3339>"}.
	Args []byte
}

// Invoke runs t and records its activation. recorded is false when
// nothing was recorded (err says why); with recorded true, err is the
// function's own failure (a recorded result).
type Invoke func(ctx context.Context, t Tick) (recorded bool, err error)

// Config configures Timers. Invoke is required.
type Config struct {
	Invoke   Invoke
	Registry prometheus.Registerer // nil: metrics are not registered
	Logger   *slog.Logger
	// Now and Grace are cron.Config's (tests); zero: its defaults.
	Now   func() time.Time
	Grace time.Duration
}

type target struct{ module, function string }

// Timers runs the edge-local timers of the desired set. Sync says which;
// Run runs them.
type Timers struct {
	cfg     Config
	log     *slog.Logger
	set     *cron.Set
	metrics *metrics

	mu      sync.Mutex
	targets map[string]target
}

// New returns Timers; it does no I/O.
func New(cfg Config) (*Timers, error) {
	if cfg.Invoke == nil {
		return nil, errors.New("timers: Config.Invoke is required")
	}
	t := &Timers{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registry), targets: map[string]target{}}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	set, err := cron.NewSet(cron.Config{Fire: t.fire, Observe: t.metrics.observe, Now: cfg.Now, Grace: cfg.Grace})
	if err != nil {
		return nil, err
	}
	t.set = set
	return t, nil
}

// Schedule is the schedule of a desired-set timer.
//
// # Errors
//
// cron.ErrInvalid for a timer with none or both of Cron and EveryMS, or
// one internal/cron refuses.
func Schedule(pt protocol.Timer) (cron.Schedule, error) {
	switch {
	case pt.Cron != "" && pt.EveryMS != 0:
		return nil, fmt.Errorf("%w: both cron and every", cron.ErrInvalid)
	case pt.Cron != "":
		return cron.Parse(pt.Cron)
	case pt.EveryMS == 0:
		return nil, fmt.Errorf("%w: neither cron nor every", cron.ErrInvalid)
	case pt.EveryMS > uint64(cron.MaxEvery.Milliseconds()):
		return nil, fmt.Errorf("%w: every %d ms is longer than the maximum of %s", cron.ErrInvalid, pt.EveryMS, cron.MaxEvery)
	}
	return cron.Every(time.Duration(pt.EveryMS) * time.Millisecond)
}

// Sync makes the running timers those of the desired set fs. A timer left
// as it was keeps its plan.
func (t *Timers) Sync(fs []protocol.DesiredFunction) {
	var timers []cron.Timer
	targets := map[string]target{}
	for _, f := range fs {
		for i, pt := range f.Timers {
			sched, err := Schedule(pt)
			if err != nil {
				t.log.Warn("ignoring a timer of the desired set", "module", f.Module, "function", f.Name, "cron", pt.Cron, "every_ms", pt.EveryMS, "err", err)
				continue
			}
			key := fmt.Sprintf("%s/%s#%d", f.Module, f.Name, i)
			timers = append(timers, cron.Timer{Key: key, Spec: fmt.Sprintf("%s|%d", pt.Cron, pt.EveryMS), Schedule: sched})
			targets[key] = target{f.Module, f.Name}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.targets = targets
	t.set.Sync(timers)
	t.metrics.timers.Set(float64(len(timers)))
	t.log.Info("local timers synced", "timers", len(timers))
}

// Run runs the timers until ctx is done, then drains (see the package doc).
func (t *Timers) Run(ctx context.Context) error {
	if err := t.set.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Args is a tick's args: its scheduled time.
func Args(scheduled time.Time) []byte {
	b, _ := json.Marshal(struct {
		Scheduled string `json:"scheduled"`
	}{scheduled.UTC().Format(time.RFC3339)})
	return b
}

func (t *Timers) fire(ctx context.Context, key string, scheduled time.Time) {
	t.mu.Lock()
	tg, ok := t.targets[key]
	t.mu.Unlock()
	if !ok {
		return
	}
	recorded, err := t.cfg.Invoke(ctx, Tick{Module: tg.module, Function: tg.function, Scheduled: scheduled, Args: Args(scheduled)})
	switch {
	case !recorded:
		t.metrics.runs.WithLabelValues(runNotRun).Inc()
		t.log.Warn("local timer tick not run", "module", tg.module, "function", tg.function, "scheduled", scheduled, "err", err)
	case err != nil:
		t.metrics.runs.WithLabelValues(runError).Inc()
	default:
		t.metrics.runs.WithLabelValues(runOK).Inc()
	}
}
