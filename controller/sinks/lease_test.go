package sinks_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kivik/kivik/v4"
	_ "github.com/go-kivik/kivik/v4/couchdb"

	"github.com/wispfn/wisp/controller/cluster"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/sinks"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// countingSender is the real CouchDB sender, counting what it writes.
type countingSender struct {
	sinks.Sender
	sent     atomic.Int64 // documents stored now
	repeated atomic.Int64 // documents found stored already (a repeat)
}

func (c *countingSender) SendBatch(ctx context.Context, ds []sinks.Delivery) []sinks.Result {
	rs := c.Sender.SendBatch(ctx, ds)
	for _, r := range rs {
		switch {
		case r.Err != nil:
		case r.Outcome == sinks.AlreadyStored:
			c.repeated.Add(1)
		default:
			c.sent.Add(1)
		}
	}
	return rs
}

// noRelease is a lease store of a controller that dies: it never
// releases its leases (a kill -9 runs no shutdown).
type noRelease struct{ cluster.LeaseStore }

func (noRelease) ReleaseLease(context.Context, string, string) (bool, error) { return false, nil }

// controller is the sink side of one controller: its own connections to
// the database, its worker and its lease loop.
type controller struct {
	st     *store.Postgres
	sender *countingSender
	worker *sinks.Worker
	leases *cluster.Leases
	stop   func()
}

func startController(t *testing.T, dsn, owner string, dies bool) *controller {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("owner", owner)
	}
	c := &controller{st: st, sender: &countingSender{Sender: sinks.NewCouch(sinks.CouchConfig{})}}
	if c.worker, err = sinks.NewWorker(sinks.Config{Queue: &sinks.StoreQueue{Store: st}, Sender: c.sender, Logger: log, DrainTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	var ls cluster.LeaseStore = st
	if dies {
		ls = noRelease{st}
	}
	if c.leases, err = cluster.NewLeases(cluster.LeaseConfig{Store: ls, Owner: owner, Logger: log}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.leases.Run(runCtx, cluster.LeaseSinks, c.worker.Run) }()
	var once sync.Once
	c.stop = func() { once.Do(func() { stop(); <-done }) }
	t.Cleanup(c.stop)
	return c
}

// TestSinksUnderLease: two controllers on one database deliver the
// results they record to one CouchDB database. Only the lease holder
// writes; every activation's document is written once; when the holder
// dies (no release), the other takes the lease within a few seconds and
// delivers what was recorded meanwhile.
func TestSinksUnderLease(t *testing.T) {
	raw := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	testenv.TCP(t, "CouchDB (pouchdb-server)", u.Host, "run make services")
	server := strings.TrimSuffix(raw, "/")
	b := make([]byte, 6)
	rand.Read(b)
	dbName := "wisp_test_" + hex.EncodeToString(b)
	client, err := kivik.New("couch", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.DestroyDB(context.Background(), dbName); client.Close() })
	db := client.DB(dbName)
	sink := fnspec.EncodeSink(fnspec.Sink{Type: "couchdb", Params: fnspec.SinkParams{URL: server + "/" + dbName}})

	dsn := testpg.Schema(t, 0)
	a := startController(t, dsn, "ctl-a", true)
	testwait.Until(t, 5*time.Second, func() error {
		if !a.leases.Held(cluster.LeaseSinks) {
			return fmt.Errorf("a does not hold the sinks lease")
		}
		return nil
	})
	bc := startController(t, dsn, "ctl-b", false)

	// Each controller records activations, as the REST API and the
	// agents' outboxes make them, and kicks its own worker.
	record := func(from, to int) {
		for i := from; i < to; i++ {
			c := a
			if i%2 == 1 {
				c = bc
			}
			_, err := c.st.RecordActivation(t.Context(), store.Activation{
				ID: fmt.Sprintf("01JLEASE%018d", i), Module: store.DefaultModule, Function: "f", Source: "api",
				Output: fmt.Appendf(nil, `{"i":%d}`, i), Started: time.Now(),
			}, [][]byte{sink})
			if err != nil {
				t.Fatal(err)
			}
			c.worker.Kick()
		}
	}
	pending := func() int {
		ds, err := bc.st.PendingDeliveries(t.Context(), time.Now().Add(time.Hour), 10000)
		if err != nil {
			t.Fatal(err)
		}
		return len(ds)
	}
	docs := func() int64 {
		stats, err := db.Stats(t.Context())
		if err != nil {
			return -1
		}
		return stats.DocCount
	}
	const n = 200
	record(0, n)
	testwait.Until(t, 30*time.Second, func() error {
		if p := pending(); p != 0 {
			return fmt.Errorf("%d deliveries pending", p)
		}
		return nil
	})
	if got := docs(); got != n {
		t.Fatalf("%d documents, want %d", got, n)
	}
	if s := bc.sender.sent.Load() + bc.sender.repeated.Load(); s != 0 {
		t.Errorf("b, not holding the lease, wrote %d documents", s)
	}

	// a dies: its lease stays in the table until it expires.
	died := time.Now()
	a.stop()
	record(n, 2*n)
	testwait.Until(t, cluster.DefaultLeaseTTL+cluster.DefaultLeaseRenew+20*time.Second, func() error {
		if p := pending(); p != 0 {
			return fmt.Errorf("%d deliveries pending", p)
		}
		return nil
	})
	t.Logf("after the holder died: the other delivered the %d results recorded meanwhile within %s", n, time.Since(died).Round(100*time.Millisecond))
	if got := docs(); got != 2*n {
		t.Errorf("%d documents, want %d", got, 2*n)
	}
	if got := bc.sender.sent.Load(); got != n {
		t.Errorf("b stored %d documents, want the %d recorded after a died", got, n)
	}
	stored := a.sender.sent.Load() + bc.sender.sent.Load()
	repeats := a.sender.repeated.Load() + bc.sender.repeated.Load()
	t.Logf("documents stored %d, repeats met as conflicts %d", stored, repeats)
	if stored != 2*n {
		t.Errorf("%d documents stored, want %d: each once", stored, 2*n)
	}
}
