package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wispfn/wisp/internal/testing/testwait"
)

func TestParseTraceParent(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sc, ok := ParseTraceParent(good)
	if !ok || !sc.Sampled() || sc.String() != good {
		t.Fatalf("ParseTraceParent(%q) = %v %v, String %q", good, sc, ok, sc.String())
	}
	for _, tc := range []struct {
		name, in string
		ok       bool
		sampled  bool
	}{
		{"unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"future version with more fields", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes", true, true},
		{"empty", "", false, false},
		{"garbage", "not a traceparent", false, false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"version 00 with more", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", false, false},
		{"upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"short trace id", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false, false},
		{"non-hex", "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", false, false},
		{"wrong separators", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, ok := ParseTraceParent(tc.in)
			if ok != tc.ok || ok && sc.Sampled() != tc.sampled {
				t.Errorf("ParseTraceParent(%q) = %v, ok %v; want ok %v sampled %v", tc.in, sc, ok, tc.ok, tc.sampled)
			}
		})
	}
	tr := NewTrace()
	if !tr.Valid() || !tr.Sampled() {
		t.Fatalf("NewTrace: %v", tr)
	}
	if c := tr.Child(); c.TraceID != tr.TraceID || c.SpanID == tr.SpanID || c.Flags != tr.Flags {
		t.Fatalf("Child of %v: %v", tr, c)
	}
	if back, ok := ParseTraceParent(tr.String()); !ok || back != tr {
		t.Fatalf("round trip of %v: %v %v", tr, back, ok)
	}
}

func FuzzParseTraceParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-")
	f.Fuzz(func(t *testing.T, s string) {
		sc, ok := ParseTraceParent(s)
		if !ok {
			return
		}
		if !sc.Valid() {
			t.Fatalf("%q parsed to an invalid context", s)
		}
		if back, ok := ParseTraceParent(sc.String()); !ok || back != sc {
			t.Fatalf("%q: String %q does not parse back", s, sc.String())
		}
	})
}

// TestOffCostsNothing: with tracing off (a nil Exporter) the calls on the
// invoke path allocate nothing.
func TestOffCostsNothing(t *testing.T) {
	var e *Exporter
	var sc SpanContext
	if n := testing.AllocsPerRun(100, func() {
		if e.Enabled() || sc.Valid() {
			t.Fatal("off looks on")
		}
		e.Export(Span{Name: "x"})
	}); n != 0 {
		t.Fatalf("%v allocations per call with tracing off", n)
	}
}

// receiver is an OTLP/HTTP receiver that decodes what it gets with the
// official collector types.
type receiver struct {
	mu    sync.Mutex
	reqs  int
	spans int
	names map[string]int
	block chan struct{} // non-nil: requests wait for it
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.block != nil {
		select {
		case <-r.block:
		case <-req.Context().Done():
			return
		}
	}
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf at /v1/traces", http.StatusBadRequest)
		return
	}
	b, _ := io.ReadAll(req.Body)
	var m coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs++
	for _, rs := range m.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans++
				r.names[s.Name]++
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (r *receiver) count() (reqs, spans int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs, r.spans
}

// TestExporterBatchesAndFlushes: spans arrive in batches of at most
// BatchSize, and what is still queued is sent when Run's context ends.
func TestExporterBatchesAndFlushes(t *testing.T) {
	rec := &receiver{names: map[string]int{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e, err := New(Config{Endpoint: srv.URL, BatchSize: 10, FlushInterval: time.Hour, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		e.Export(Span{Context: NewTrace(), Name: "s", Start: time.Now(), End: time.Now(), Attrs: []Attr{String("k", "v"), Int("n", int64(i))}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	testwait.For(t, 10*time.Second, "two full batches", func() bool { _, n := rec.count(); return n == 20 })
	cancel() // the last 5 go out on the way down
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if reqs, n := rec.count(); reqs != 3 || n != 25 {
		t.Fatalf("%d requests, %d spans; want 3 and 25", reqs, n)
	}
	if got := testutil.ToFloat64(m.spans.WithLabelValues(resultExported)); got != 25 {
		t.Fatalf("exported counter %v, want 25", got)
	}
}

// TestExporterNeverBlocks: with a receiver that never answers, Export
// returns at once, spans past the queue are dropped and counted, and the
// requests that time out are counted as failed.
func TestExporterNeverBlocks(t *testing.T) {
	rec := &receiver{names: map[string]int{}, block: make(chan struct{})}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	defer close(rec.block)
	m := NewMetrics(prometheus.NewRegistry())
	e, err := New(Config{Endpoint: srv.URL, QueueSize: 8, BatchSize: 4, FlushInterval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	start := time.Now()
	for range 1000 {
		e.Export(Span{Context: NewTrace(), Name: "s"})
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("1000 Exports took %s with a stuck receiver", d)
	}
	dropped := testutil.ToFloat64(m.spans.WithLabelValues(resultDropped))
	if dropped < 1000-8-2*4 {
		t.Errorf("%v spans dropped, want almost all of 1000 (queue 8)", dropped)
	}
	testwait.For(t, 10*time.Second, "a timed-out request counted", func() bool {
		return testutil.ToFloat64(m.spans.WithLabelValues(resultFailed)) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesBadEndpoints(t *testing.T) {
	for _, ep := range []string{"", "localhost:4318", "ftp://x:1", "http://"} {
		if _, err := New(Config{Endpoint: ep}); err == nil {
			t.Errorf("New accepted endpoint %q", ep)
		}
	}
	e, err := New(Config{Endpoint: "http://collector:4318/"})
	if err != nil || e.url != "http://collector:4318/v1/traces" {
		t.Fatalf("url %q, %v", e.url, err)
	}
}
