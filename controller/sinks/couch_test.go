package sinks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kivik/kivik/v4"
	_ "github.com/go-kivik/kivik/v4/couchdb"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testnet"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// couchServer returns the URL of the CouchDB-compatible test server
// (pouchdb-server, started by scripts/test-services.sh), or skips.
func couchServer(t testing.TB) string {
	t.Helper()
	raw := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("WISP_TEST_COUCHDB_URL: %v", err)
	}
	testenv.TCP(t, "CouchDB (pouchdb-server)", u.Host, "run make services")
	return strings.TrimSuffix(raw, "/")
}

// testDB makes a database name of its own for t and destroys the database
// when t ends.
func testDB(t testing.TB, server string) (string, *kivik.DB) {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "wisp_test_" + hex.EncodeToString(b)
	client, err := kivik.New("couch", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.DestroyDB(ctx, name); err != nil && kivik.HTTPStatus(err) != 404 {
			t.Errorf("destroying %s: %v", name, err)
		}
		client.Close()
	})
	return name, client.DB(name)
}

func docCount(t testing.TB, db *kivik.DB) int64 {
	t.Helper()
	st, err := db.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats of %s: %v", db.Name(), err)
	}
	return st.DocCount
}

func activationID(i int) string { return fmt.Sprintf("01JTEST%019d", i) } // 26 characters, sortable

func TestCouchStoresDocuments(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	c := NewCouch(CouchConfig{})
	defer c.Close()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, output string
		check        func(doc map[string]any) error
	}{
		{"object", `{"greeting":"hello","n":7}`, func(doc map[string]any) error {
			if doc["greeting"] != "hello" || doc["n"] != 7.0 || doc["output"] != nil {
				return fmt.Errorf("output fields not merged")
			}
			return nil
		}},
		{"array", `[1,2,3]`, func(doc map[string]any) error {
			if fmt.Sprint(doc["output"]) != "[1 2 3]" {
				return fmt.Errorf("output = %v", doc["output"])
			}
			return nil
		}},
		{"number", `3.5`, func(doc map[string]any) error {
			if doc["output"] != 3.5 {
				return fmt.Errorf("output = %v", doc["output"])
			}
			return nil
		}},
		{"reserved key", `{"_rev":"1-x"}`, func(doc map[string]any) error {
			if fmt.Sprint(doc["output"]) != "map[_rev:1-x]" {
				return fmt.Errorf("output = %v", doc["output"])
			}
			return nil
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Delivery{ActivationID: activationID(i), Module: "mod", Function: "fn", Sink: Params{URL: server + "/" + name}, Output: []byte(tt.output), Time: at}
			out, err := c.Send(context.Background(), d)
			if err != nil || out != Stored {
				t.Fatalf("Send = %v, %v; want Stored", out, err)
			}
			var doc map[string]any
			if err := db.Get(context.Background(), d.ActivationID).ScanDoc(&doc); err != nil {
				t.Fatal(err)
			}
			if doc["_id"] != d.ActivationID || doc["wisp_module"] != "mod" || doc["wisp_function"] != "fn" ||
				doc["wisp_activation"] != d.ActivationID || doc["wisp_time"] != "2026-01-02T03:04:05.000Z" {
				t.Errorf("metadata wrong: %v", doc)
			}
			if err := tt.check(doc); err != nil {
				t.Errorf("%v: %v", err, doc)
			}
		})
	}
}

// TestCouchReplayIsConflict: the same activation sent again is a conflict,
// reported as AlreadyStored, and the database keeps one document.
func TestCouchReplayIsConflict(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	c := NewCouch(CouchConfig{})
	defer c.Close()
	d := Delivery{ActivationID: activationID(1), Module: "m", Function: "f", Sink: Params{URL: server + "/" + name}, Output: []byte(`{"v":1}`), Time: time.Now()}
	for i, want := range []Outcome{Stored, AlreadyStored, AlreadyStored} {
		out, err := c.Send(context.Background(), d)
		if err != nil || out != want {
			t.Fatalf("send %d = %v, %v; want %v", i+1, out, err, want)
		}
	}
	// Through the worker: a replayed activation counts as a conflict.
	q := NewMemQueue()
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: c, PollInterval: 10 * time.Millisecond})
	defer func() { cancel(); <-errc }()
	q.Add(d)
	w.Kick()
	testwait.Until(t, 10*time.Second, func() error {
		if q.Len() != 0 {
			return fmt.Errorf("%d pending", q.Len())
		}
		return nil
	})
	if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues("conflict")); got != 1 {
		t.Errorf("conflicts counted = %v, want 1", got)
	}
	if n := docCount(t, db); n != 1 {
		t.Errorf("documents = %d, want 1", n)
	}
}

// TestCouchRecreatesDatabase: a database deleted behind Couch's back is
// created again.
func TestCouchRecreatesDatabase(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	c := NewCouch(CouchConfig{})
	defer c.Close()
	d := Delivery{ActivationID: activationID(1), Sink: Params{URL: server + "/" + name}, Output: []byte(`1`)}
	if _, err := c.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	client, _ := kivik.New("couch", server)
	defer client.Close()
	if err := client.DestroyDB(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	d.ActivationID = activationID(2)
	if out, err := c.Send(context.Background(), d); err != nil || out != Stored {
		t.Fatalf("Send after the database was deleted = %v, %v", out, err)
	}
	if n := docCount(t, db); n != 1 {
		t.Errorf("documents = %d, want 1", n)
	}
}

// TestWorkerDeliversEachOnce: 500 activations, each to two sinks (two
// databases), through the worker: every document arrives exactly once.
func TestWorkerDeliversEachOnce(t *testing.T) {
	server := couchServer(t)
	name1, db1 := testDB(t, server)
	name2, db2 := testDB(t, server)
	q := NewMemQueue()
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: NewCouch(CouchConfig{}), PollInterval: 10 * time.Millisecond})
	defer func() { cancel(); <-errc }()
	const n = 500
	for i := range n {
		for s, name := range []string{name1, name2} {
			q.Add(Delivery{ActivationID: activationID(i), Module: "m", Function: "f", SinkIndex: s,
				Sink: Params{URL: server + "/" + name}, Output: fmt.Appendf(nil, `{"i":%d}`, i), Time: time.Now()})
		}
		if i%50 == 0 {
			w.Kick()
		}
	}
	w.Kick()
	testwait.Until(t, 60*time.Second, func() error {
		if q.Len() != 0 {
			return fmt.Errorf("%d pending", q.Len())
		}
		return nil
	})
	for _, db := range []*kivik.DB{db1, db2} {
		if got := docCount(t, db); got != n {
			t.Errorf("%s holds %d documents, want %d", db.Name(), got, n)
		}
	}
	if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues("ok")); got != 2*n {
		t.Errorf("stored = %v, want %d", got, 2*n)
	}
	if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues("error")); got != 0 {
		t.Errorf("errors = %v, want 0", got)
	}
}

// TestWorkerSinkDown: deliveries to an unreachable sink are retried with
// backoff, show in Health, and all arrive, once, when the sink is back.
func TestWorkerSinkDown(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	u, _ := url.Parse(server)
	p := testnet.NewTCPProxy(t, u.Host)
	p.Stop() // the port is now closed: connection refused

	q := NewMemQueue()
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: NewCouch(CouchConfig{Timeout: 2 * time.Second}),
		PollInterval: 5 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	defer func() { cancel(); <-errc }()
	const n = 50
	for i := range n {
		q.Add(Delivery{ActivationID: activationID(i), Module: "m", Function: "f", Sink: Params{URL: "http://" + p.Addr() + "/" + name},
			Output: []byte(`{"ok":true}`), Time: time.Now()})
	}
	w.Kick()
	// Every delivery fails a few times. The health table is updated just
	// after the queue records a failure: poll it too.
	var h []SinkHealth
	testwait.Until(t, 20*time.Second, func() error {
		for i := range n {
			if msg, attempts, _ := q.LastError(activationID(i), 0); attempts < 3 || msg == "" {
				return fmt.Errorf("delivery %d: %d attempts (%q)", i, attempts, msg)
			}
		}
		if h = w.Health("m", "f"); len(h) != 1 || h[0].ConsecutiveFailures < 3*n {
			return fmt.Errorf("Health while down = %+v", h)
		}
		return nil
	})
	if !strings.Contains(h[0].LastError, "refused") {
		t.Fatalf("Health while down = %+v", h)
	}
	msg, _, _ := q.LastError(activationID(0), 0)
	t.Logf("while down: %d failed attempts; last error %q", h[0].Failures, msg)

	if err := p.Start(); err != nil { // the same port again
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, func() error {
		if q.Len() != 0 {
			return fmt.Errorf("%d pending after the sink came back", q.Len())
		}
		return nil
	})
	if got := docCount(t, db); got != n {
		t.Errorf("documents = %d, want %d", got, n)
	}
	// The health table is updated just after the queue's mark.
	testwait.Until(t, 5*time.Second, func() error {
		if h := w.Health("m", "f"); h[0].ConsecutiveFailures != 0 || h[0].Delivered != n {
			return fmt.Errorf("Health after recovery = %+v", h)
		}
		return nil
	})
}

// syncBuffer is a bytes.Buffer for concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCredentialsNeverLogged: failures against a sink with passwords (in the
// fields, in the URL, against an unreachable port and against a server that
// rejects them) leave them out of logs, errors and health.
func TestCredentialsNeverLogged(t *testing.T) {
	server := couchServer(t)
	name, _ := testDB(t, server)
	closed := func() string { // a port with nothing listening
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	su, _ := url.Parse(server)
	sinks := []Params{
		{URL: "http://" + closed + "/db", Username: "alice", Password: "field-s3cret"},
		{URL: "http://bob:url-s3cret@" + closed + "/db"},
		{URL: "http://" + su.Host + "/" + name, Username: "alice", Password: "rejected-s3cret"}, // pouchdb-server: 401
		{URL: "http://carol:url2-s3cret@" + su.Host + "/" + name},
	}
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q := NewMemQueue()
	c := NewCouch(CouchConfig{})
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: c, Logger: log, LogEvery: time.Nanosecond,
		PollInterval: 5 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	defer func() { cancel(); <-errc }()
	for i, p := range sinks {
		q.Add(Delivery{ActivationID: activationID(1), Module: "m", Function: "f", SinkIndex: i, Sink: p, Output: []byte(`{}`)})
	}
	w.Kick()
	testwait.Until(t, 20*time.Second, func() error {
		for i := range sinks {
			if _, attempts, _ := q.LastError(activationID(1), i); attempts < 2 {
				return fmt.Errorf("sink %d: %d attempts", i, attempts)
			}
		}
		return nil
	})
	var seen []string
	seen = append(seen, logs.String())
	for i, p := range sinks {
		msg, _, _ := q.LastError(activationID(1), i)
		_, err := c.Send(context.Background(), Delivery{ActivationID: activationID(2), Sink: p})
		seen = append(seen, msg, errString(err))
		t.Logf("sink %d error: %s", i, msg)
	}
	for _, h := range w.Health("m", "f") {
		seen = append(seen, fmt.Sprintf("%+v", h))
	}
	for _, s := range seen {
		if strings.Contains(s, "s3cret") {
			t.Errorf("a password leaked: %s", s)
		}
	}
	if !strings.Contains(logs.String(), `"activation"`) || !strings.Contains(logs.String(), `"sink":"http://bob:xxxxx@`) {
		t.Errorf("the log lacks the expected keys:\n%s", logs.String())
	}
}

// BenchmarkWorker measures deliveries per second through the worker into
// the test server (one database, default concurrency of 8 requests), with
// one document per request and with the default batches of 200. The
// deliveries are queued before the worker is kicked, as when an agent's
// outbox arrives after a partition heals; -benchtime 5500x is that case.
func BenchmarkWorker(b *testing.B) {
	for _, size := range []int{1, 200} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchmarkWorker(b, size) })
	}
}

func benchmarkWorker(b *testing.B, batchSize int) {
	server := couchServer(b)
	name, db := testDB(b, server)
	q := NewMemQueue()
	w, err := NewWorker(Config{Queue: q, Sender: NewCouch(CouchConfig{}), PollInterval: time.Millisecond, BatchSize: batchSize})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	defer func() { cancel(); <-errc }()
	// Create the database outside the measurement.
	q.Add(Delivery{ActivationID: "warmup", Sink: Params{URL: server + "/" + name}, Output: []byte(`{}`)})
	w.Kick()
	for q.Len() > 0 {
		time.Sleep(time.Millisecond)
	}
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		q.Add(Delivery{ActivationID: activationID(i), Module: "m", Function: "f", Sink: Params{URL: server + "/" + name},
			Output: fmt.Appendf(nil, `{"i":%d,"greeting":"hello"}`, i), Time: now})
	}
	w.Kick()
	for q.Len() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	if got := docCount(b, db); got != int64(b.N)+1 {
		b.Fatalf("documents = %d, want %d", got, b.N+1)
	}
	if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues(resultError)); got != 0 {
		b.Fatalf("%v failed attempts", got)
	}
}

// countingTransport counts the requests that write documents.
type countingTransport struct {
	rt        http.RoundTripper
	bulk, put atomic.Int64
}

func newCountingTransport() *countingTransport {
	return &countingTransport{rt: http.DefaultTransport.(*http.Transport).Clone()}
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/_bulk_docs"):
		c.bulk.Add(1)
	case r.Method == http.MethodPut && strings.Count(strings.Trim(r.URL.Path, "/"), "/") > 0:
		c.put.Add(1) // a document, not a database
	}
	return c.rt.RoundTrip(r)
}

// TestWorkerDeliversBatches: 2,000 deliveries to one sink, queued at once,
// arrive exactly once, in full batches.
func TestWorkerDeliversBatches(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	tr := newCountingTransport()
	q := NewMemQueue()
	const n = 2000
	for i := range n {
		q.Add(Delivery{ActivationID: activationID(i), Module: "m", Function: "f", Sink: Params{URL: server + "/" + name},
			Output: fmt.Appendf(nil, `{"i":%d}`, i), Time: time.Now()})
	}
	start := time.Now()
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: NewCouch(CouchConfig{Transport: tr}), PollInterval: 10 * time.Millisecond})
	defer func() { cancel(); <-errc }()
	testwait.Until(t, 60*time.Second, func() error {
		if q.Len() != 0 {
			return fmt.Errorf("%d pending", q.Len())
		}
		return nil
	})
	t.Logf("%d deliveries in %v (%.0f/s) with %d _bulk_docs requests", n, time.Since(start).Round(time.Millisecond),
		n/time.Since(start).Seconds(), tr.bulk.Load())
	if got := docCount(t, db); got != n {
		t.Errorf("documents = %d, want %d", got, n)
	}
	for result, want := range map[string]float64{"ok": n, "conflict": 0, "error": 0} {
		if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues(result)); got != want {
			t.Errorf("deliveries{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := tr.bulk.Load(); got != n/200 {
		t.Errorf("_bulk_docs requests = %d, want %d (batches of 200)", got, n/200)
	}
	if got := tr.put.Load(); got != 0 {
		t.Errorf("single-document PUTs = %d, want 0", got)
	}
	var doc map[string]any
	if err := db.Get(context.Background(), activationID(1234)).ScanDoc(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["i"] != 1234.0 || doc[FieldActivation] != activationID(1234) {
		t.Errorf("document %s = %v", activationID(1234), doc)
	}
	// The health table is updated just after the queue's mark.
	testwait.Until(t, 5*time.Second, func() error {
		if h := w.Health("m", "f"); len(h) != 1 || h[0].Delivered != n || h[0].Failures != 0 {
			return fmt.Errorf("Health = %+v", h)
		}
		return nil
	})
}

// TestCouchSendBatchConflicts: ids already stored are conflicts, reported
// as AlreadyStored (and counted as conflicts by the worker); the rest are
// stored, in the same request.
func TestCouchSendBatchConflicts(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	tr := newCountingTransport()
	c := NewCouch(CouchConfig{Transport: tr})
	defer c.Close()
	sink := Params{URL: server + "/" + name}
	var ds []Delivery
	for i := range 10 {
		ds = append(ds, Delivery{ActivationID: activationID(i), Module: "m", Function: "f", Sink: sink, Output: []byte(`{"v":1}`)})
	}
	for _, i := range []int{0, 4, 9} {
		if _, err := c.Send(context.Background(), ds[i]); err != nil {
			t.Fatal(err)
		}
	}
	tr.bulk.Store(0)
	for i, r := range c.SendBatch(context.Background(), ds) {
		want := Stored
		if i == 0 || i == 4 || i == 9 {
			want = AlreadyStored
		}
		if r.Err != nil || r.Outcome != want {
			t.Errorf("delivery %d: %v, %v; want %v", i, r.Outcome, r.Err, want)
		}
	}
	if got := tr.bulk.Load(); got != 1 {
		t.Errorf("_bulk_docs requests = %d, want 1", got)
	}
	if got := docCount(t, db); got != 10 {
		t.Errorf("documents = %d, want 10", got)
	}

	// Through the worker: ten more, five of them replays.
	q := NewMemQueue()
	for i := 5; i < 15; i++ {
		q.Add(Delivery{ActivationID: activationID(i), Module: "m", Function: "f", Sink: sink, Output: []byte(`{"v":2}`)})
	}
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: c, PollInterval: 10 * time.Millisecond})
	defer func() { cancel(); <-errc }()
	testwait.Until(t, 10*time.Second, func() error {
		if q.Len() != 0 {
			return fmt.Errorf("%d pending", q.Len())
		}
		return nil
	})
	for result, want := range map[string]float64{"ok": 5, "conflict": 5, "error": 0} {
		if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues(result)); got != want {
			t.Errorf("deliveries{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := docCount(t, db); got != 15 {
		t.Errorf("documents = %d, want 15", got)
	}
}

// TestCouchSendBatchRejectedDocument: a document the server will not take
// fails alone. pouchdb-server (like CouchDB) rejects the whole _bulk_docs
// request with 400 for an id that begins with "_"; Couch then writes the
// batch document by document.
func TestCouchSendBatchRejectedDocument(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	c := NewCouch(CouchConfig{})
	defer c.Close()
	sink := Params{URL: server + "/" + name}
	q := NewMemQueue()
	for i := range 10 {
		id := activationID(i)
		if i == 3 {
			id = "_illegal"
		}
		q.Add(Delivery{ActivationID: id, Module: "m", Function: "f", Sink: sink, Output: []byte(`{}`)})
	}
	w, cancel, errc := startWorker(t, Config{Queue: q, Sender: c, PollInterval: 10 * time.Millisecond, MinBackoff: time.Minute, MaxBackoff: time.Minute})
	defer func() { cancel(); <-errc }()
	testwait.Until(t, 10*time.Second, func() error {
		if q.Len() != 1 {
			return fmt.Errorf("%d pending, want 1", q.Len())
		}
		return nil
	})
	msg, attempts, ok := q.LastError("_illegal", 0)
	if !ok || attempts != 1 || !strings.Contains(msg, "underscore") {
		t.Errorf("rejected delivery: queued %v, %d attempts, last error %q", ok, attempts, msg)
	}
	t.Logf("rejected: %s", msg)
	if got := docCount(t, db); got != 9 {
		t.Errorf("documents = %d, want 9", got)
	}
	for result, want := range map[string]float64{"ok": 9, "error": 1} {
		if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues(result)); got != want {
			t.Errorf("deliveries{result=%q} = %v, want %v", result, got, want)
		}
	}
	// The health table is updated just after the queue's mark.
	testwait.Until(t, 5*time.Second, func() error {
		if h := w.Health("m", "f"); len(h) != 1 || h[0].Delivered != 9 || h[0].Failures != 1 {
			return fmt.Errorf("Health = %+v", h)
		}
		return nil
	})
}

// TestCouchSendBatchRequestFails: a request that fails as a whole fails
// every delivery of the batch, without the credentials in any error.
func TestCouchSendBatchRequestFails(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	su, _ := url.Parse(server)
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	c := NewCouch(CouchConfig{})
	defer c.Close()
	tests := []struct {
		name   string
		sink   Params
		status int
		want   string
	}{
		{"unauthorized", Params{URL: "http://" + su.Host + "/" + name, Username: "alice", Password: "wrong-s3cret"}, 401, "Name or password is incorrect"},
		{"credentials in url", Params{URL: "http://bob:url-s3cret@" + su.Host + "/" + name}, 401, "Name or password is incorrect"},
		{"connection refused", Params{URL: "http://carol:url-s3cret@" + closed + "/" + name}, http.StatusBadGateway, "refused"}, // kivik's status for a transport failure
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ds []Delivery
			for i := range 5 {
				ds = append(ds, Delivery{ActivationID: activationID(i), Sink: tt.sink, Output: []byte(`{}`)})
			}
			for i, r := range c.SendBatch(context.Background(), ds) {
				if r.Err == nil || kivik.HTTPStatus(r.Err) != tt.status || !strings.Contains(r.Err.Error(), tt.want) || strings.Contains(r.Err.Error(), "s3cret") {
					t.Errorf("delivery %d: %v (status %d); want status %d, %q, no password", i, r.Err, kivik.HTTPStatus(r.Err), tt.status, tt.want)
				}
			}
		})
	}
	if _, err := db.Stats(context.Background()); kivik.HTTPStatus(err) != http.StatusNotFound {
		t.Errorf("the database exists (%v); it was never created, so nothing was written", err)
	}
	// Invalid parameters fail without a request, as for Send.
	rs := c.SendBatch(context.Background(), []Delivery{{ActivationID: "a", Sink: Params{URL: "ftp://x/db"}}})
	if !errors.Is(rs[0].Err, ErrInvalidParams) {
		t.Errorf("invalid parameters: %v", rs[0].Err)
	}
}

// TestCouchSendBatchRecreatesDatabase: a batch creates its database, and
// creates it again when it was deleted behind Couch's back.
func TestCouchSendBatchRecreatesDatabase(t *testing.T) {
	server := couchServer(t)
	name, db := testDB(t, server)
	c := NewCouch(CouchConfig{})
	defer c.Close()
	batch := func(from int) []Delivery {
		var ds []Delivery
		for i := from; i < from+5; i++ {
			ds = append(ds, Delivery{ActivationID: activationID(i), Sink: Params{URL: server + "/" + name}, Output: []byte(`1`)})
		}
		return ds
	}
	check := func(rs []Result) {
		t.Helper()
		for i, r := range rs {
			if r.Err != nil || r.Outcome != Stored {
				t.Fatalf("delivery %d: %v, %v", i, r.Outcome, r.Err)
			}
		}
	}
	check(c.SendBatch(context.Background(), batch(0)))
	client, _ := kivik.New("couch", server)
	defer client.Close()
	if err := client.DestroyDB(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	check(c.SendBatch(context.Background(), batch(5)))
	if n := docCount(t, db); n != 5 {
		t.Errorf("documents = %d, want 5", n)
	}
}

// TestCouchSendBatchDocumentErrors uses a fake CouchDB, as pouchdb-server
// reports no per-document error but conflicts: a document refused in a 201
// response (CouchDB's validate_doc_update answers "forbidden") fails alone,
// and a 5xx fails the whole batch.
func TestCouchSendBatchDocumentErrors(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/db":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"ok":true}`)
		case r.Method == http.MethodPost && r.URL.Path == "/db/_bulk_docs" && fail.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"unavailable","reason":"maintenance"}`)
		case r.Method == http.MethodPost && r.URL.Path == "/db/_bulk_docs":
			var body struct {
				Docs []map[string]any `json:"docs"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var res []map[string]any
			for _, d := range body.Docs {
				switch {
				case d["reject"] == true:
					res = append(res, map[string]any{"id": d["_id"], "error": "forbidden", "reason": "rejected by validate_doc_update"})
				case d["dup"] == true:
					res = append(res, map[string]any{"id": d["_id"], "error": "conflict", "reason": "Document update conflict."})
				default:
					res = append(res, map[string]any{"ok": true, "id": d["_id"], "rev": "1-x"})
				}
			}
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(res)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := NewCouch(CouchConfig{})
	defer c.Close()
	sink := Params{URL: srv.URL + "/db", Username: "u", Password: "pw-s3cret"}
	outputs := []string{`{}`, `{"reject":true}`, `{"dup":true}`, `{}`}
	var ds []Delivery
	for i, o := range outputs {
		ds = append(ds, Delivery{ActivationID: activationID(i), Sink: sink, Output: []byte(o)})
	}
	rs := c.SendBatch(context.Background(), ds)
	if rs[0].Outcome != Stored || rs[2].Outcome != AlreadyStored || rs[3].Outcome != Stored || rs[0].Err != nil || rs[2].Err != nil || rs[3].Err != nil {
		t.Errorf("results = %+v", rs)
	}
	if rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), "rejected by validate_doc_update") {
		t.Errorf("rejected document: %v", rs[1].Err)
	}
	fail.Store(true)
	for i, r := range c.SendBatch(context.Background(), ds) {
		if kivik.HTTPStatus(r.Err) != http.StatusServiceUnavailable || strings.Contains(r.Err.Error(), "s3cret") {
			t.Errorf("delivery %d with the server failing: %v", i, r.Err)
		}
	}
}
