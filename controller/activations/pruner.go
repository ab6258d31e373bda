package activations

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
)

// Retention bounds the activation records the store keeps. A zero field is
// no bound.
type Retention struct {
	// MaxAge removes records older than it, by the time in their id (when
	// the activation started, on the clock of whoever ran it).
	MaxAge time.Duration
	// MaxPerFunction keeps the newest MaxPerFunction records of each
	// (module, function), so one busy function cannot push every other
	// function's history out of MaxCount.
	MaxPerFunction int
	// MaxCount keeps the newest MaxCount records in all.
	MaxCount int
}

// DefaultRetention is the controller's retention unless configured:
// a week, 10,000 records per function, 100,000 in all. With the default
// Bounds a record takes at most about 73 KiB (output, message, fields), so
// the records take at most about 7 GiB, and far less for functions whose
// outputs are small (docs/decisions.md).
var DefaultRetention = Retention{MaxAge: 7 * 24 * time.Hour, MaxPerFunction: 10_000, MaxCount: 100_000}

// PruneStore is what the pruner needs of the store.
type PruneStore interface {
	PruneActivationsBefore(ctx context.Context, id string, limit int) (int, error)
	PruneActivationsBeyond(ctx context.Context, keep, limit int) (int, error)
	PruneActivationsBeyondPerFunction(ctx context.Context, keep, limit int) (int, error)
	ActivationVolume(ctx context.Context) (store.ActivationVolume, error)
}

// Defaults of PrunerConfig.
const (
	DefaultPruneInterval = time.Minute
	DefaultPruneBatch    = 500
)

// PrunerConfig configures a Pruner. Store is required; zero values
// elsewhere take the defaults.
type PrunerConfig struct {
	Store     PruneStore
	Retention Retention
	// Interval is the time between two passes; the first runs at once.
	Interval time.Duration
	// Batch is the most records one store call (one transaction) removes;
	// capped at store.MaxActivationLimit.
	Batch   int
	Metrics *Metrics
	Logger  *slog.Logger
	Now     func() time.Time // the clock MaxAge counts from; default time.Now
}

// Pruner enforces a Retention: build it with NewPruner, run it with Run.
type Pruner struct {
	cfg PrunerConfig
	log *slog.Logger
}

// NewPruner returns a Pruner; it does no I/O.
func NewPruner(cfg PrunerConfig) *Pruner {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPruneInterval
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultPruneBatch
	}
	cfg.Batch = min(cfg.Batch, store.MaxActivationLimit)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pruner{cfg: cfg, log: log}
}

// Pruned counts the records one pass removed, by bound.
type Pruned struct{ Age, PerFunction, Count int }

// Run makes a pass at once, then one every Interval, until ctx is done; a
// pass under way stops between two batches. A failed pass is logged and
// counted, and the next one tries again. It returns nil.
func (p *Pruner) Run(ctx context.Context) error {
	r := p.cfg.Retention
	p.log.Info("activation retention (0: no bound)", "max_age", r.MaxAge, "max_per_function", r.MaxPerFunction,
		"max_count", r.MaxCount, "interval", p.cfg.Interval)
	ticker := time.NewTicker(p.cfg.Interval)
	defer ticker.Stop()
	for {
		if _, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Metrics.pruneFailed()
			p.log.Error("pruning activations failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Prune makes one pass: it removes the records out of the retention's
// bounds, age first, then per function, then in all, each bound batch by
// batch until a batch comes back short, and then sets the volume gauges.
func (p *Pruner) Prune(ctx context.Context) (Pruned, error) {
	var (
		done Pruned
		err  error
		r    = p.cfg.Retention
		st   = p.cfg.Store
	)
	if r.MaxAge > 0 {
		before := activationid.First(p.cfg.Now().Add(-r.MaxAge))
		done.Age, err = p.drain(ctx, reasonAge, func(limit int) (int, error) {
			return st.PruneActivationsBefore(ctx, before, limit)
		})
	}
	if r.MaxPerFunction > 0 && err == nil {
		done.PerFunction, err = p.drain(ctx, reasonFunctionCount, func(limit int) (int, error) {
			return st.PruneActivationsBeyondPerFunction(ctx, r.MaxPerFunction, limit)
		})
	}
	if r.MaxCount > 0 && err == nil {
		done.Count, err = p.drain(ctx, reasonCount, func(limit int) (int, error) {
			return st.PruneActivationsBeyond(ctx, r.MaxCount, limit)
		})
	}
	if err != nil {
		return done, err
	}
	v, err := st.ActivationVolume(ctx)
	if err != nil {
		return done, fmt.Errorf("activation volume: %w", err)
	}
	p.cfg.Metrics.volume(v.Count, v.Bytes)
	if done != (Pruned{}) {
		p.log.Info("activations pruned", "age", done.Age, "function_count", done.PerFunction, "count", done.Count,
			"stored", v.Count, "stored_bytes", v.Bytes)
	}
	return done, nil
}

// drain calls prune until a batch removes fewer than a batch, or ctx is done.
func (p *Pruner) drain(ctx context.Context, reason string, prune func(limit int) (int, error)) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := prune(p.cfg.Batch)
		p.cfg.Metrics.pruned(reason, n)
		total += n
		if err != nil {
			return total, fmt.Errorf("pruning by %s: %w", reason, err)
		}
		if n < p.cfg.Batch {
			return total, nil
		}
	}
}
