package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/cluster"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// noRelease is the lease store of a controller that dies: it never
// releases its lease (a kill -9 runs no shutdown).
type noRelease struct{ cluster.LeaseStore }

func (noRelease) ReleaseLease(context.Context, string, string) (bool, error) { return false, nil }

// tally counts, per message number, the invocations of every controller.
type tally struct {
	mu  sync.Mutex
	got map[int][]string // message number -> the controllers that invoked it
}

func (ty *tally) invoker(who string) Invoke {
	return func(_ context.Context, _, _ string, args []byte) error {
		var msg struct{ N int }
		if err := json.Unmarshal(args, &msg); err != nil {
			return err
		}
		ty.mu.Lock()
		ty.got[msg.N] = append(ty.got[msg.N], who)
		ty.mu.Unlock()
		return nil
	}
}

func (ty *tally) by(who string, n int) bool {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	for _, w := range ty.got[n] {
		if w == who {
			return true
		}
	}
	return false
}

// leasedManager is one controller's events side: a Manager running for
// the whole test and its lease loop, which stopLease ends.
type leasedManager struct {
	m         *Manager
	leases    *cluster.Leases
	stopLease func()
}

func startLeased(t *testing.T, ls cluster.LeaseStore, owner, clusterName string, inv Invoke) *leasedManager {
	t.Helper()
	m, err := New(Config{Invoke: inv, Instance: owner + "-" + testenv.Unique(), Cluster: clusterName, Logger: testLogger(t).With("owner", owner), ConnectTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(runCtx) }()
	t.Cleanup(func() { stopRun(); <-runDone })
	leases, err := cluster.NewLeases(cluster.LeaseConfig{Store: ls, Owner: owner, Logger: testLogger(t).With("owner", owner)})
	if err != nil {
		t.Fatal(err)
	}
	leaseCtx, stop := context.WithCancel(context.Background())
	leaseDone := make(chan error, 1)
	go func() { leaseDone <- leases.Run(leaseCtx, cluster.LeaseEvents, m.Hold) }()
	var once sync.Once
	lm := &leasedManager{m: m, leases: leases, stopLease: func() { once.Do(func() { stop(); <-leaseDone }) }}
	t.Cleanup(lm.stopLease)
	return lm
}

// TestEventsUnderLease: two controllers of one cluster on one real
// Mosquitto and one Postgres. Only the holder of the events lease is
// subscribed. A numbered stream of QoS 1 messages is published while the
// holder dies (its lease loop stops, no release): each message is invoked
// at most once across both, and those published while no controller held
// the session (the broker queued them) are invoked by the new holder.
func TestEventsUnderLease(t *testing.T) {
	testenv.Mosquitto(t)
	st, err := store.OpenPostgres(t.Context(), testpg.Schema(t, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	clusterName := "cluster-" + testenv.Unique()
	topic := "wisp/test/lease/" + testenv.Unique()
	b := local("mod", "fn", topic)
	ty := &tally{got: map[int][]string{}}

	a := startLeased(t, noRelease{st}, "ctl-a", clusterName, ty.invoker("a"))
	mustSync(t, a.m, b) // every controller syncs every function's bindings
	t.Cleanup(func() { endSessions(t, a.m) })
	testwait.Until(t, 10*time.Second, func() error {
		if !a.m.Holding() {
			return errors.New("a does not hold the events")
		}
		return nil
	})
	if st, err := a.m.Sync(t.Context(), []Binding{b}); err != nil || st[0].Err != nil {
		t.Fatalf("a's subscription: %v %v", err, st)
	}
	c := startLeased(t, st, "ctl-b", clusterName, ty.invoker("b"))
	mustSync(t, c.m, b)
	if c.m.Holding() {
		t.Fatal("b holds the events while a does")
	}
	if st := c.m.Check(t.Context(), []Binding{b, {Module: "mod", Function: "fn", Host: "127.0.0.1", Port: freePort(t), Topic: topic}}); st[0].Err != nil || !errors.Is(st[1].Err, ErrNotConnected) {
		t.Errorf("Check from the controller not holding: %v, %v; want nil and ErrNotConnected", st[0].Err, st[1].Err)
	}

	pub := publisher(t, testenv.MosquittoAddr)
	const total, dieAt = 300, 60
	var died, took time.Time
	queued := 0 // published while no controller held the session
	for n := range total {
		if n == dieAt {
			died = time.Now()
			a.stopLease() // a stops renewing and disconnects; its lease row stays until it expires
		}
		if n >= dieAt && took.IsZero() {
			if c.m.Holding() {
				took = time.Now()
			} else {
				queued++
			}
		}
		publish(t, pub, topic, fmt.Sprintf(`{"n":%d}`, n))
		time.Sleep(25 * time.Millisecond)
	}
	if took.IsZero() {
		t.Fatal("b never took the events lease")
	}
	testwait.Until(t, cluster.DefaultLeaseTTL+cluster.DefaultLeaseRenew+15*time.Second, func() error {
		if !ty.by("b", total-1) {
			return fmt.Errorf("b has not invoked the last message")
		}
		return nil
	})
	time.Sleep(time.Second) // late repeats, if any, would come now

	ty.mu.Lock()
	defer ty.mu.Unlock()
	var lost []int
	byA, byB, gapStart := 0, 0, -1
	for n := range total {
		who := ty.got[n]
		switch {
		case len(who) == 0:
			lost = append(lost, n)
		case len(who) > 1:
			t.Errorf("message %d invoked %d times: %v", n, len(who), who)
		case who[0] == "a":
			byA++
		default:
			byB++
			if gapStart < 0 {
				gapStart = n
			}
		}
	}
	t.Logf("a invoked %d, b %d, lost %d %v; b took the lease %s after a died; %d messages were published meanwhile (queued by the broker); b's first was number %d (a died before %d)",
		byA, byB, len(lost), lost, took.Sub(died).Round(100*time.Millisecond), queued, gapStart, dieAt)
	if len(lost) > 0 {
		t.Errorf("%d messages lost: %v", len(lost), lost)
	}
	if byA < dieAt/2 || byB < total-dieAt-10 {
		t.Errorf("a invoked %d (published before it died: %d), b %d: the takeover did not happen as expected", byA, dieAt, byB)
	}
}

// TestForgottenBrokerSessionEnded: a broker no binding uses any more has
// its session ended, so that it stops queueing messages for the cluster:
// a message published after the last binding went is not delivered when
// a binding on that broker comes back.
func TestForgottenBrokerSessionEnded(t *testing.T) {
	testenv.Mosquitto(t)
	clusterName := "cluster-" + testenv.Unique()
	topic := "wisp/test/forget/" + testenv.Unique()
	b := local("mod", "fn", topic)
	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke, Cluster: clusterName})
	mustSync(t, m, b)
	pub := publisher(t, testenv.MosquittoAddr)
	publish(t, pub, topic, `{"n":1}`)
	rec.waitFor(t, call{"mod", "fn", `{"n":1}`})

	mustSync(t, m) // the last binding on the broker goes
	testwait.Until(t, 10*time.Second, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.brokers) != 0 {
			return errors.New("broker still connected")
		}
		return nil
	})
	m.brokerWG.Wait() // its loop ended the session
	publish(t, pub, topic, `{"n":2}`)

	mustSync(t, m, b)
	publish(t, pub, topic, `{"n":3}`)
	rec.waitFor(t, call{"mod", "fn", `{"n":3}`})
	if rec.has(call{"mod", "fn", `{"n":2}`}) {
		t.Error("a message published while no binding used the broker was delivered: the session was kept")
	}
}

func TestRecentSet(t *testing.T) {
	r := newRecentSet()
	d := func(i int) digest { return digestOf("t", fmt.Appendf(nil, "%d", i)) }
	r.add(7, d(1))
	if !r.has(7, d(1)) || r.has(7, d(2)) || r.has(8, d(1)) {
		t.Fatal("has after one add")
	}
	r.add(7, d(2)) // the broker reused id 7 once acknowledged
	if r.has(7, d(1)) || !r.has(7, d(2)) {
		t.Fatal("a reused id keeps its old digest")
	}
	for i := range recentCap + 10 { // ids 1000.. push 7 out
		r.add(uint16(1000+i), d(i))
	}
	if r.has(7, d(2)) {
		t.Error("an entry older than recentCap is still there")
	}
	if len(r.byID) != recentCap {
		t.Errorf("%d entries, want %d", len(r.byID), recentCap)
	}
	if !r.has(uint16(1000+recentCap+9), d(recentCap+9)) {
		t.Error("the newest entry is gone")
	}
}
