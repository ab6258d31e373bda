package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSender fails the first fail[activation] attempts of each activation
// and records when every attempt was made.
type fakeSender struct {
	mu       sync.Mutex
	fail     map[string]int
	attempts map[string][]time.Time
	block    chan struct{} // when not nil, Send waits for it or ctx
	batches  [][]string    // the activations of each SendBatch call
	active   int           // SendBatch calls running now
	most     int           // the most SendBatch calls running at once
}

func newFakeSender() *fakeSender {
	return &fakeSender{fail: map[string]int{}, attempts: map[string][]time.Time{}}
}

func (f *fakeSender) Send(ctx context.Context, d Delivery) (Outcome, error) {
	f.mu.Lock()
	f.attempts[d.ActivationID] = append(f.attempts[d.ActivationID], time.Now())
	n := len(f.attempts[d.ActivationID])
	fail := f.fail[d.ActivationID]
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if n <= fail {
		return 0, fmt.Errorf("connection refused (attempt %d)", n)
	}
	if n > fail+1 {
		return AlreadyStored, nil
	}
	return Stored, nil
}

// SendBatch sends each delivery with Send, concurrently, as one request
// would carry them together.
func (f *fakeSender) SendBatch(ctx context.Context, ds []Delivery) []Result {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ActivationID
	}
	f.mu.Lock()
	f.batches = append(f.batches, ids)
	f.active++
	f.most = max(f.most, f.active)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()
	res := make([]Result, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { res[i].Outcome, res[i].Err = f.Send(ctx, d) })
	}
	wg.Wait()
	return res
}

func (f *fakeSender) times(id string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.attempts[id]...)
}

func startWorker(t *testing.T, cfg Config) (*Worker, context.CancelFunc, <-chan error) {
	t.Helper()
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	return w, cancel, errc
}

// TestWorkerBackoff checks the retry schedule, the health table and the
// metrics, in a synctest bubble so that the waits cost nothing.
func TestWorkerBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := NewMemQueue()
		f := newFakeSender()
		f.fail["A"] = 5
		reg := prometheus.NewRegistry()
		w, cancel, errc := startWorker(t, Config{
			Queue: q, Sender: f, Registerer: reg,
			PollInterval: 10 * time.Millisecond, MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
		})
		q.Add(Delivery{ActivationID: "A", Module: "m", Function: "f", Sink: Params{URL: "http://u:pw@couch/db"}})
		q.Add(Delivery{ActivationID: "B", Module: "m", Function: "f", SinkIndex: 1, Sink: Params{URL: "http://couch/other"}})
		w.Kick()

		// Poll the fake clock until A is delivered, then let the worker
		// finish recording it (the health table is updated after the
		// queue's mark).
		for q.Len() > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		at := f.times("A")
		if len(at) != 6 {
			t.Fatalf("A was tried %d times, want 6", len(at))
		}
		// Waits: [0.5,1], [1,2], [2,4], [2,4], [2,4] seconds, plus up to one poll.
		bounds := [][2]time.Duration{{500 * time.Millisecond, time.Second}, {time.Second, 2 * time.Second}, {2 * time.Second, 4 * time.Second}, {2 * time.Second, 4 * time.Second}, {2 * time.Second, 4 * time.Second}}
		for i, b := range bounds {
			if gap := at[i+1].Sub(at[i]); gap < b[0] || gap > b[1]+10*time.Millisecond {
				t.Errorf("wait before attempt %d = %v, want in [%v, %v]", i+2, gap, b[0], b[1])
			}
		}
		if n := len(f.times("B")); n != 1 {
			t.Errorf("B was tried %d times, want 1", n)
		}

		h := w.Health("m", "f")
		if len(h) != 2 || h[0].Index != 0 || h[1].Index != 1 {
			t.Fatalf("Health = %+v", h)
		}
		if h[0].Failures != 5 || h[0].ConsecutiveFailures != 0 || h[0].Delivered != 1 || h[0].LastError != "connection refused (attempt 5)" || h[0].Sink != "http://u:xxxxx@couch/db" {
			t.Errorf("Health[0] = %+v", h[0])
		}
		if w.Health("m", "other") != nil {
			t.Error("Health of an unknown function is not nil")
		}
		w.Forget("m", "f")
		if w.Health("m", "f") != nil {
			t.Error("Health after Forget is not nil")
		}
		for result, want := range map[string]float64{"ok": 2, "conflict": 0, "error": 5} {
			if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues(result)); got != want {
				t.Errorf("wisp_sink_deliveries_total{result=%q} = %v, want %v", result, got, want)
			}
		}
		if n, err := testutil.GatherAndCount(reg, "wisp_sink_pending"); err != nil || n != 1 {
			t.Errorf("wisp_sink_pending: %d series, %v", n, err)
		}

		// A replay of an activation already delivered meets a conflict.
		q.Add(Delivery{ActivationID: "B", Module: "m", Function: "f", SinkIndex: 1})
		w.Kick()
		synctest.Wait()
		if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues("conflict")); got != 1 || q.Len() != 0 {
			t.Errorf("replay: conflict = %v, queue length %d", got, q.Len())
		}

		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestWorkerKick: a Kick starts deliveries at once, not at the next poll.
func TestWorkerKick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := NewMemQueue()
		f := newFakeSender()
		w, cancel, errc := startWorker(t, Config{Queue: q, Sender: f, PollInterval: time.Hour})
		synctest.Wait()
		start := time.Now()
		for i := range 20 {
			q.Add(Delivery{ActivationID: fmt.Sprint(i)})
		}
		w.Kick()
		synctest.Wait()
		if q.Len() != 0 || time.Since(start) != 0 {
			t.Fatalf("after a Kick: %d pending, %v elapsed", q.Len(), time.Since(start))
		}
		if err := w.Run(context.Background()); !errors.Is(err, ErrRunning) {
			t.Fatalf("second Run = %v, want ErrRunning", err)
		}
		cancel()
		<-errc
	})
}

// TestWorkerConcurrency: never more requests at once than configured, each
// of at most BatchSize deliveries to one sink.
func TestWorkerConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := NewMemQueue()
		f := newFakeSender()
		f.block = make(chan struct{})
		w, cancel, errc := startWorker(t, Config{Queue: q, Sender: f, Concurrency: 3, BatchSize: 2})
		synctest.Wait()     // the worker's first look at the (empty) queue is over
		for i := range 20 { // five sinks, interleaved
			q.Add(Delivery{ActivationID: fmt.Sprintf("%02d", i), Sink: Params{URL: fmt.Sprintf("http://couch/db%d", i%5)}})
		}
		w.Kick()
		synctest.Wait()
		if got := testutil.ToFloat64(w.metrics.inFlight); got != 6 {
			t.Fatalf("deliveries in flight = %v, want 6 (3 requests of 2)", got)
		}
		close(f.block)
		for q.Len() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		for i := range 20 {
			if n := len(f.times(fmt.Sprintf("%02d", i))); n != 1 {
				t.Errorf("delivery %d sent %d times, want 1", i, n)
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.most != 3 {
			t.Errorf("at most %d requests at once, want 3", f.most)
		}
		// Oldest first, two of one sink per batch: the first three batches
		// are those of the three oldest sinks.
		first := fmt.Sprint(f.batches[:3])
		for _, b := range []string{"[00 05]", "[01 06]", "[02 07]"} {
			if !strings.Contains(first, b) {
				t.Errorf("first batches = %s, want %s among them", first, b)
			}
		}
		for _, b := range f.batches {
			if len(b) != 2 {
				t.Errorf("batch %v: want 2 deliveries of one sink", b)
			}
		}
		cancel()
		<-errc
	})
}

func TestWorkerBatches(t *testing.T) {
	w, err := NewWorker(Config{Queue: NewMemQueue(), BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	d := func(id string, sink Params, out int) Delivery {
		return Delivery{ActivationID: id, Sink: sink, Output: make([]byte, out)}
	}
	a := Params{URL: "http://couch:5984/a"}
	aSlash := Params{URL: "http://couch:5984/a/"} // the same target
	aBob := Params{URL: "http://couch:5984/a", Username: "bob", Password: "pw"}
	b := Params{URL: "http://couch:5984/b"}
	bad := Params{URL: "ftp://couch/x"}
	ids := func(bs [][]Delivery) string {
		var s []string
		for _, b := range bs {
			var ids []string
			for _, d := range b {
				ids = append(ids, d.ActivationID)
			}
			s = append(s, strings.Join(ids, ","))
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		name string
		ds   []Delivery
		skip []string
		n    int
		want string
	}{
		{"one target", []Delivery{d("1", a, 1), d("2", a, 1), d("3", a, 1), d("4", a, 1), d("5", a, 1)}, nil, 8, "1,2,3 4,5"},
		{"same target spelled otherwise", []Delivery{d("1", a, 1), d("2", aSlash, 1)}, nil, 8, "1,2"},
		{"credentials split", []Delivery{d("1", a, 1), d("2", aBob, 1), d("3", a, 1)}, nil, 8, "1,3 2"},
		{"interleaved", []Delivery{d("1", a, 1), d("2", b, 1), d("3", a, 1), d("4", b, 1)}, nil, 8, "1,3 2,4"},
		{"at most n", []Delivery{d("1", a, 1), d("2", b, 1), d("3", bad, 1), d("4", a, 1), d("5", a, 1), d("6", a, 1)}, nil, 2, "1,4,5 2"},
		{"in flight skipped", []Delivery{d("1", a, 1), d("2", a, 1), d("3", a, 1)}, []string{"1", "2"}, 8, "3"},
		{"invalid grouped apart", []Delivery{d("1", bad, 1), d("2", a, 1), d("3", bad, 1)}, nil, 8, "1,3 2"},
		{"bytes", []Delivery{d("1", a, maxBatchBytes/2), d("2", a, maxBatchBytes/2), d("3", a, 1), d("4", a, maxBatchBytes+1)}, nil, 8, "1,2 3 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skip := map[deliveryKey]bool{}
			for _, id := range tt.skip {
				skip[deliveryKey{id, 0}] = true
			}
			if got := ids(w.batches(tt.ds, skip, tt.n)); got != tt.want {
				t.Errorf("batches = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWorkerDrain: on shutdown a write in flight gets DrainTimeout, is then
// cancelled and stays pending without counting as a failure.
func TestWorkerDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := NewMemQueue()
		f := newFakeSender()
		f.block = make(chan struct{})
		w, cancel, errc := startWorker(t, Config{Queue: q, Sender: f, DrainTimeout: 3 * time.Second})
		q.Add(Delivery{ActivationID: "A"})
		w.Kick()
		synctest.Wait()
		start := time.Now()
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("Run returned after %v, want the 3s drain timeout", waited)
		}
		if _, attempts, ok := q.LastError("A", 0); !ok || attempts != 0 {
			t.Errorf("after shutdown: queued %v, attempts %d; want still queued, 0 attempts", ok, attempts)
		}
		if got := testutil.ToFloat64(w.metrics.deliveries.WithLabelValues("error")); got != 0 {
			t.Errorf("errors counted: %v", got)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if _, err := NewWorker(Config{}); err == nil {
		t.Error("NewWorker without a queue succeeded")
	}
	if _, err := NewWorker(Config{Queue: NewMemQueue(), MinBackoff: time.Minute, MaxBackoff: time.Second}); err == nil {
		t.Error("MaxBackoff < MinBackoff accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewWorker(Config{Queue: NewMemQueue(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWorker(Config{Queue: NewMemQueue(), Registerer: reg}); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}
