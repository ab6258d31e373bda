package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/controller/cluster"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openPostgres(t *testing.T) *store.Postgres {
	st, _ := openPostgresDSN(t)
	return st
}

func openPostgresDSN(t *testing.T) (*store.Postgres, string) {
	t.Helper()
	dsn := testpg.Schema(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dsn
}

// deadStore is a lease store whose controller died: it never releases
// (a kill -9 runs no shutdown), and, once failing is set, its database
// calls fail as if the controller had lost the network.
type deadStore struct {
	cluster.LeaseStore
	failing atomic.Bool
}

func (d *deadStore) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (int64, bool, error) {
	if d.failing.Load() {
		return 0, false, errors.New("connection refused (simulated)")
	}
	return d.LeaseStore.TakeLease(ctx, name, owner, ttl)
}

func (d *deadStore) ReleaseLease(context.Context, string, string) (bool, error) { return false, nil }

// journal records when each contender's work ran, and fails the test if
// two ran at once.
type journal struct {
	t      *testing.T
	active atomic.Int32
	mu     sync.Mutex
	starts []event
	stops  []event
}

type event struct {
	who string
	at  time.Time
}

// work is a contender's singleton work: it runs until its context ends.
func (j *journal) work(who string) func(context.Context) error {
	return func(ctx context.Context) error {
		if n := j.active.Add(1); n > 1 {
			j.t.Errorf("%s started its work while %d other contender(s) ran theirs", who, n-1)
		}
		j.mu.Lock()
		j.starts = append(j.starts, event{who, time.Now()})
		j.mu.Unlock()
		<-ctx.Done()
		j.mu.Lock()
		j.stops = append(j.stops, event{who, time.Now()})
		j.mu.Unlock()
		j.active.Add(-1)
		return nil
	}
}

// startedBy returns when who last started its work (zero: never).
func (j *journal) startedBy(who string) time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	var at time.Time
	for _, e := range j.starts {
		if e.who == who {
			at = e.at
		}
	}
	return at
}

func newLeases(t *testing.T, st cluster.LeaseStore, owner string, reg prometheus.Registerer, timing ...time.Duration) *cluster.Leases {
	t.Helper()
	cfg := cluster.LeaseConfig{Store: st, Owner: owner, Logger: testLogger().With("owner", owner), Registerer: reg}
	if len(timing) == 3 {
		cfg.TTL, cfg.Renew, cfg.Margin = timing[0], timing[1], timing[2]
	}
	l, err := cluster.NewLeases(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// run runs l.Run until the returned stop is called (and the test's end).
func run(t *testing.T, l *cluster.Leases, name string, work func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, name, work) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitHeld(t *testing.T, l *cluster.Leases, name string, within time.Duration) {
	t.Helper()
	testwait.Until(t, within, func() error {
		if !l.Held(name) {
			return errors.New("lease not held")
		}
		return nil
	})
}

// TestLeaseTakeoverAfterDeath: the holder dies (stops renewing and never
// releases); the other controller takes the lease within TTL + Renew of
// the holder's last renewal, with the default timing, and never while the
// dead one's work still ran.
func TestLeaseTakeoverAfterDeath(t *testing.T) {
	t.Parallel()
	st := openPostgres(t)
	j := &journal{t: t}
	regA := prometheus.NewRegistry()
	a := newLeases(t, &deadStore{LeaseStore: st}, "ctl-a", regA)
	b := newLeases(t, st, "ctl-b", nil)
	stopA := run(t, a, cluster.LeaseEvents, j.work("a"))
	waitHeld(t, a, cluster.LeaseEvents, 5*time.Second)
	if got := testutil.ToFloat64(regGauge(t, regA, cluster.LeaseEvents)); got != 1 {
		t.Fatalf("wisp_controller_lease_held = %v while held", got)
	}
	run(t, b, cluster.LeaseEvents, j.work("b"))
	time.Sleep(2 * cluster.DefaultLeaseRenew) // b tries and fails while a renews
	if b.Held(cluster.LeaseEvents) {
		t.Fatal("b holds the lease a holds")
	}

	died := time.Now()
	stopA() // its work stops; no release: the row stays a's until it expires
	waitHeld(t, b, cluster.LeaseEvents, cluster.DefaultLeaseTTL+cluster.DefaultLeaseRenew+3*time.Second)
	// Held comes true just before the work's goroutine records its start.
	testwait.For(t, 5*time.Second, "b's work started", func() bool { return !j.startedBy("b").IsZero() })
	took := j.startedBy("b").Sub(died)
	t.Logf("takeover %s after the holder died (TTL %s, renew %s)", took.Round(time.Millisecond), cluster.DefaultLeaseTTL, cluster.DefaultLeaseRenew)
	if max := cluster.DefaultLeaseTTL + cluster.DefaultLeaseRenew + 500*time.Millisecond; took > max {
		t.Errorf("takeover took %s, want at most TTL + renew (+0.5 s) = %s", took, max)
	}
	if min := cluster.DefaultLeaseTTL - cluster.DefaultLeaseRenew; took < min {
		t.Errorf("takeover after %s, before the dead holder's lease could have expired (%s)", took, min)
	}
}

// regGauge is the registered wisp_controller_lease_held gauge of name.
func regGauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wisp_controller_lease_held" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "lease" && lp.GetValue() == name {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "copy"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no wisp_controller_lease_held{lease=%q}", name)
	return nil
}

// TestLeaseReleaseHandsOver: a controller that stops cleanly releases its
// lease; the other takes it at its next attempt, without waiting for the
// TTL.
func TestLeaseReleaseHandsOver(t *testing.T) {
	t.Parallel()
	st := openPostgres(t)
	j := &journal{t: t}
	a := newLeases(t, st, "ctl-a", nil)
	b := newLeases(t, st, "ctl-b", nil)
	stopA := run(t, a, cluster.LeaseSinks, j.work("a"))
	waitHeld(t, a, cluster.LeaseSinks, 5*time.Second)
	run(t, b, cluster.LeaseSinks, j.work("b"))
	time.Sleep(cluster.DefaultLeaseRenew + 200*time.Millisecond)

	stopped := time.Now()
	stopA()
	waitHeld(t, b, cluster.LeaseSinks, 5*time.Second)
	testwait.For(t, 5*time.Second, "b's work started", func() bool { return !j.startedBy("b").IsZero() })
	took := j.startedBy("b").Sub(stopped)
	t.Logf("handover %s after a clean stop", took.Round(time.Millisecond))
	if max := cluster.DefaultLeaseRenew + 500*time.Millisecond; took > max {
		t.Errorf("handover took %s, want at most one renewal period (+0.5 s) = %s", took, max)
	}
}

// TestLeaseRenewalFailureStopsWork: when the holder cannot reach the
// database, its work is cancelled at its first failed renewal, long
// before another controller can take the lease; the other takes it once
// it expires.
func TestLeaseRenewalFailureStopsWork(t *testing.T) {
	t.Parallel()
	st := openPostgres(t)
	j := &journal{t: t}
	dead := &deadStore{LeaseStore: st}
	regA := prometheus.NewRegistry()
	a := newLeases(t, dead, "ctl-a", regA)
	b := newLeases(t, st, "ctl-b", nil)
	run(t, a, cluster.LeaseSinks, j.work("a"))
	waitHeld(t, a, cluster.LeaseSinks, 5*time.Second)
	run(t, b, cluster.LeaseSinks, j.work("b"))

	cut := time.Now()
	dead.failing.Store(true)
	testwait.Until(t, 3*time.Second, func() error {
		if a.Held(cluster.LeaseSinks) {
			return errors.New("a still holds")
		}
		return nil
	})
	j.mu.Lock()
	stoppedAfter := j.stops[0].at.Sub(cut)
	j.mu.Unlock()
	if stoppedAfter > cluster.DefaultLeaseRenew+300*time.Millisecond {
		t.Errorf("a's work stopped %s after its database went away, want within one renewal period", stoppedAfter)
	}
	waitHeld(t, b, cluster.LeaseSinks, cluster.DefaultLeaseTTL+cluster.DefaultLeaseRenew+3*time.Second)
	t.Logf("a stopped %s after the cut; b took over %s after it", stoppedAfter.Round(time.Millisecond), j.startedBy("b").Sub(cut).Round(time.Millisecond))
	lost, err := testutil.GatherAndCount(regA, "wisp_controller_lease_lost_total")
	if err != nil || lost != 1 {
		t.Errorf("wisp_controller_lease_lost_total series: %d, %v", lost, err)
	}
}

// TestLeaseNeverTwoHolders: three contenders on one lease, with short
// timing, are started and stopped at random for several seconds, some
// dying (no release) and some stopping cleanly; their work never runs at
// once (journal fails the test otherwise) and the lease keeps being held.
func TestLeaseNeverTwoHolders(t *testing.T) {
	t.Parallel()
	st := openPostgres(t)
	j := &journal{t: t}
	const ttl, renew, margin = 1500 * time.Millisecond, 200 * time.Millisecond, 600 * time.Millisecond
	type contender struct {
		name   string
		store  cluster.LeaseStore
		leases *cluster.Leases
		stop   func()
	}
	cs := make([]*contender, 3)
	for i := range cs {
		name := fmt.Sprintf("ctl-%d", i)
		var ls cluster.LeaseStore = st
		if i%2 == 1 {
			ls = &deadStore{LeaseStore: st} // never releases: every stop is a death
		}
		cs[i] = &contender{name: name, store: ls}
	}
	start := func(c *contender) {
		c.leases = newLeases(t, c.store, c.name, nil, ttl, renew, margin)
		c.stop = run(t, c.leases, "churn", j.work(c.name))
	}
	for _, c := range cs {
		start(c)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	end := time.Now().Add(8 * time.Second)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		c := cs[rng.IntN(len(cs))]
		for _, h := range cs { // mostly stop the holder, so that the lease changes hands
			if h.leases.Held("churn") && rng.IntN(3) > 0 {
				c = h
			}
		}
		c.stop()
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		start(c)
	}
	for _, c := range cs {
		c.stop()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	t.Logf("%d periods of work over %d contenders", len(j.starts), len(cs))
	if len(j.starts) < 4 {
		t.Errorf("only %d periods of work: the lease did not change hands", len(j.starts))
	}
}

// TestLeaseHostileRow: a row written by hand for a dead owner. One
// expiring further ahead than any controller writes (store.MaxLeaseTTL)
// is taken at once; one within that bound holds until it expires or an
// operator deletes it (DELETE FROM leases WHERE name = '...'), after
// which the next attempt takes it.
func TestLeaseHostileRow(t *testing.T) {
	t.Parallel()
	st, dsn := openPostgresDSN(t)
	ctx := t.Context()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	if _, err := pg.Exec(ctx, `INSERT INTO leases (name, owner, epoch, acquired, expires)
		VALUES ('events', 'ghost', 7, now(), now() + interval '10 years'), ('sinks', 'ghost', 3, now(), now() + interval '50 seconds')`); err != nil {
		t.Fatal(err)
	}
	j := &journal{t: t}
	a := newLeases(t, st, "ctl-a", nil)
	run(t, a, cluster.LeaseEvents, j.work("events"))
	waitHeld(t, a, cluster.LeaseEvents, 3*time.Second)

	ja := &journal{t: t}
	run(t, a, cluster.LeaseSinks, ja.work("sinks"))
	time.Sleep(3 * cluster.DefaultLeaseRenew)
	if a.Held(cluster.LeaseSinks) {
		t.Fatal("a took a lease a live owner holds for 50 s more")
	}
	if _, err := pg.Exec(ctx, `DELETE FROM leases WHERE name = 'sinks'`); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, a, cluster.LeaseSinks, 3*time.Second)
	ls, err := st.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.Owner != "ctl-a" || !l.Live {
			t.Errorf("lease %+v, want ctl-a's and live", l)
		}
		if l.Name == "events" && l.Epoch != 8 {
			t.Errorf("events epoch %d, want 8 (the ghost's 7, taken once)", l.Epoch)
		}
	}
}

// TestLeaseAlone: without a store (the embedded store's lone controller)
// the work runs at once and the lease shows held.
func TestLeaseAlone(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	l := newLeases(t, nil, "solo", reg)
	started := make(chan struct{})
	stop := run(t, l, cluster.LeaseSinks, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return nil
	})
	select {
	case <-started:
	case <-time.After(time.Second):
		t.Fatal("work did not start")
	}
	if !l.Held(cluster.LeaseSinks) {
		t.Error("Held is false")
	}
	if got := testutil.ToFloat64(regGauge(t, reg, cluster.LeaseSinks)); got != 1 {
		t.Errorf("gauge %v", got)
	}
	stop()
	if l.Held(cluster.LeaseSinks) {
		t.Error("Held after Run returned")
	}
}

func TestLeaseConfig(t *testing.T) {
	if _, err := cluster.NewLeases(cluster.LeaseConfig{}); err == nil {
		t.Error("no owner accepted")
	}
	if _, err := cluster.NewLeases(cluster.LeaseConfig{Owner: "x", TTL: 3 * time.Second, Renew: time.Second, Margin: 2 * time.Second}); err == nil {
		t.Error("renewal as long as TTL - margin accepted")
	}
}
