package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The leases of the controller's singleton work.
const (
	// LeaseSinks: the CouchDB sink deliveries (controller/sinks.Worker).
	LeaseSinks = "sinks"
	// LeaseEvents: the cloud MQTT subscriptions (controller/events.Manager.Hold).
	LeaseEvents = "events"
	// LeasePruner: activation retention (controller/activations.Pruner):
	// one controller prunes, so several never run the same long DELETE
	// at once.
	LeasePruner = "pruner"
)

// LeaseStore keeps leases: store.Postgres does. TakeLease takes name for
// owner, or renews it, for ttl from the database's clock, when the row is
// owner's or has expired; held is false when another owner's lease is
// live. ReleaseLease ends owner's lease at once.
type LeaseStore interface {
	TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (epoch int64, held bool, err error)
	ReleaseLease(ctx context.Context, name, owner string) (bool, error)
}

// Lease timing defaults (see LeaseConfig).
const (
	DefaultLeaseTTL    = 5 * time.Second
	DefaultLeaseRenew  = time.Second
	DefaultLeaseMargin = 2 * time.Second
)

// LeaseConfig configures Leases. Owner is required.
type LeaseConfig struct {
	// Store keeps the leases; nil means this controller is the only one
	// (the embedded store): every lease is always its own.
	Store LeaseStore
	// Owner is this controller's instance id (server.Config.InstanceID).
	Owner string
	// TTL is how long a taken or renewed lease lasts, from the database's
	// clock (default 5 s); Renew is how often the holder renews it and
	// the others try to take it (default 1 s); Margin is how long before
	// the lease could lapse the holder stops its work when renewals do
	// not answer (default 2 s), so that it has stopped before anyone
	// else can take the lease. Renew must be shorter than TTL - Margin.
	TTL, Renew, Margin time.Duration
	Logger             *slog.Logger          // default: discard
	Registerer         prometheus.Registerer // nil: metrics not registered
}

// Leases runs singleton work under named leases (see the package doc).
type Leases struct {
	cfg  LeaseConfig
	log  *slog.Logger
	held *prometheus.GaugeVec
	lost *prometheus.CounterVec

	mu    sync.Mutex
	holds map[string]bool
}

// NewLeases checks cfg and registers the metrics; it does no I/O.
func NewLeases(cfg LeaseConfig) (*Leases, error) {
	if cfg.Owner == "" {
		return nil, errors.New("cluster: LeaseConfig.Owner is required")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.TTL, DefaultLeaseTTL)
	def(&cfg.Renew, DefaultLeaseRenew)
	def(&cfg.Margin, DefaultLeaseMargin)
	if cfg.Renew >= cfg.TTL-cfg.Margin {
		return nil, fmt.Errorf("cluster: lease renewal every %s must be shorter than the TTL %s less the margin %s", cfg.Renew, cfg.TTL, cfg.Margin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Leases{
		cfg: cfg,
		log: cfg.Logger,
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wisp_controller_lease_held",
			Help: "1 while this controller holds the lease (and runs its singleton work: sinks, events), 0 while another controller does or none can be taken.",
		}, []string{"lease"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_controller_lease_lost_total",
			Help: "Leases this controller lost while running their work: a renewal failed or did not answer in time, or another controller had taken it.",
		}, []string{"lease"}),
		holds: map[string]bool{},
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(l.held); err != nil {
			return nil, fmt.Errorf("cluster: registering metrics: %w", err)
		}
		if err := cfg.Registerer.Register(l.lost); err != nil {
			return nil, fmt.Errorf("cluster: registering metrics: %w", err)
		}
	}
	return l, nil
}

// Held reports whether this controller holds lease name now.
func (l *Leases) Held(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holds[name]
}

func (l *Leases) set(name string, held bool) {
	l.mu.Lock()
	l.holds[name] = held
	l.mu.Unlock()
	v := 0.0
	if held {
		v = 1
	}
	l.held.WithLabelValues(name).Set(v)
}

// Run runs work while this controller holds lease name, until ctx ends.
// It tries to take the lease every Renew; once taken, it starts work with
// a context that is cancelled the moment a renewal fails, says another
// controller has the lease, or has not answered by the time the lease
// could lapse less Margin; it waits for work to return and tries again.
// When ctx ends it cancels work, waits for it and releases the lease, so
// that another controller takes it at its next attempt. When work returns
// by itself, the lease is released and taken again Renew later.
//
// work must return promptly once its context is done: the lease is
// exclusive only while work stops within Margin.
//
// Without a Store, work runs at once for the whole of ctx (and again
// Renew after it returns by itself). Run returns nil when ctx ends.
func (l *Leases) Run(ctx context.Context, name string, work func(context.Context) error) error {
	l.set(name, false)
	for {
		if l.cfg.Store == nil {
			l.runAlone(ctx, name, work)
		} else {
			l.hold(ctx, name, work)
		}
		t := time.NewTimer(l.cfg.Renew)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runAlone runs work as the only controller.
func (l *Leases) runAlone(ctx context.Context, name string, work func(context.Context) error) {
	l.set(name, true)
	defer l.set(name, false)
	l.log.Debug("lease held: the only controller (embedded store)", "lease", name)
	if err := work(ctx); err != nil && ctx.Err() == nil {
		l.log.Error("singleton work ended with an error; starting it again", "lease", name, "err", err)
	}
}

// hold makes one attempt at taking the lease and, when taken, runs work
// until it is lost, work returns or ctx ends.
//
// Time: the database sets the lease's expiry to its now() plus TTL when
// it runs the statement, which is after this process sent it, so the
// lease lasts at least until start + TTL on this process's monotonic
// clock; work is stopped by start + TTL - Margin at the latest. Only the
// database's clock decides who may take an expired lease, and only the
// monotonic clock of this process measures how long it may keep it: the
// controllers' wall clocks play no part.
func (l *Leases) hold(ctx context.Context, name string, work func(context.Context) error) {
	start := time.Now()
	valid := start.Add(l.cfg.TTL - l.cfg.Margin)
	tctx, cancel := context.WithDeadline(ctx, valid)
	epoch, ok, err := l.cfg.Store.TakeLease(tctx, name, l.cfg.Owner, l.cfg.TTL)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("cannot take a lease (the store does not answer); retrying", "lease", name, "err", err)
		}
		return
	}
	if !ok {
		return
	}
	l.set(name, true)
	l.log.Info("lease acquired: running its singleton work here", "lease", name, "owner", l.cfg.Owner, "epoch", epoch)

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- work(wctx) }()
	tick := time.NewTicker(l.cfg.Renew)
	defer tick.Stop()
	lapse := time.NewTimer(time.Until(valid))
	defer lapse.Stop()

	var reason string
renew:
	for {
		select {
		case err := <-done:
			l.set(name, false)
			if ctx.Err() == nil {
				l.log.Error("singleton work ended by itself; releasing its lease", "lease", name, "err", err)
			}
			l.release(name)
			return
		case <-ctx.Done():
			stop()
			l.set(name, false)
			<-done
			l.release(name)
			return
		case <-lapse.C:
			reason = "renewals did not answer before the lease could lapse"
			break renew
		case <-tick.C:
			sent := time.Now()
			rctx, cancel := context.WithDeadline(ctx, valid)
			_, ok, err := l.cfg.Store.TakeLease(rctx, name, l.cfg.Owner, l.cfg.TTL)
			cancel()
			switch {
			case ctx.Err() != nil:
				continue // the ctx.Done case stops and releases
			case err != nil:
				reason = "renewal failed: " + err.Error()
				break renew
			case !ok:
				reason = "another controller has taken it"
				break renew
			}
			valid = sent.Add(l.cfg.TTL - l.cfg.Margin)
			lapse.Reset(time.Until(valid))
		}
	}
	stop()
	l.set(name, false)
	l.lost.WithLabelValues(name).Inc()
	l.log.Warn("lease lost: stopping its singleton work here", "lease", name, "owner", l.cfg.Owner, "epoch", epoch, "reason", reason)
	stopping := time.Now()
	<-done
	if d := time.Since(stopping); d > l.cfg.Margin {
		l.log.Warn("singleton work took longer than the lease margin to stop; another controller may have started it meanwhile", "lease", name, "took", d, "margin", l.cfg.Margin)
	}
}

// releaseTimeout bounds a release on shutdown.
const releaseTimeout = 2 * time.Second

func (l *Leases) release(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if _, err := l.cfg.Store.ReleaseLease(ctx, name, l.cfg.Owner); err != nil {
		l.log.Warn("could not release a lease; another controller takes it when it expires", "lease", name, "err", err)
		return
	}
	l.log.Info("lease released", "lease", name, "owner", l.cfg.Owner)
}
