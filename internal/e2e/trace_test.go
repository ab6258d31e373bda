package e2e

import (
	"bytes"
	"encoding/hex"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a real OTLP/HTTP receiver: it decodes each request
// with the official collector types and keeps the spans.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	errs  []string
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var m coltracepb.ExportTraceServiceRequest
		err := proto.Unmarshal(b, &m)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case req.Method != "POST" || req.URL.Path != "/v1/traces":
			r.errs = append(r.errs, req.Method+" "+req.URL.Path)
		case req.Header.Get("Content-Type") != "application/x-protobuf":
			r.errs = append(r.errs, "content type "+req.Header.Get("Content-Type"))
		case err != nil:
			r.errs = append(r.errs, err.Error())
		}
		for _, rs := range m.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(r.Close)
	return r
}

// trace returns the spans received for a trace id (hex).
func (r *otlpReceiver) trace(id string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if hex.EncodeToString(s.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

// roots returns the received spans without a parent, by trace id.
func (r *otlpReceiver) roots() map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		if len(s.ParentSpanId) == 0 {
			out[hex.EncodeToString(s.TraceId)] = s
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key != key {
			continue
		}
		if _, ok := a.Value.Value.(*commonpb.AnyValue_IntValue); ok {
			return strconv.FormatInt(a.Value.GetIntValue(), 10)
		}
		return a.Value.GetStringValue()
	}
	return ""
}

func invokeWithHeader(t *testing.T, c *controller, path, traceparent string) (int, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.url+path, strings.NewReader(`{"args":{"name":"Ada"}}`))
	req.Header.Set("Authorization", "Bearer "+c.admin)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// TestTracesToOTLP: a traced REST invocation through a real controller and
// agent reaches an OTLP/HTTP receiver as one trace under the caller's
// span: the request, scheduling and dispatch, and the agent's phases as
// children of dispatch with the durations the agent reported (the
// controller's phase histogram holds the same figures). A request without
// traceparent starts its own trace; a malformed one is ignored; an
// unsampled one exports nothing.
func TestTracesToOTLP(t *testing.T) {
	rec := startOTLPReceiver(t)
	c := startController(t, t.TempDir(), "", "127.0.0.1:0", "--otlp-endpoint", rec.URL, "--metrics-addr", "127.0.0.1:0")
	metricsAddr := c.Await(`msg=metrics addr=(\S+)`)
	startAgent(t, c, c.joinToken(t, ""), "edge", t.TempDir())
	c.upload(t, "_", "hello", "hello_c", nil)

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if status, _ := invokeWithHeader(t, c, "/v1/fn/_/hello", "00-"+traceID+"-"+callerSpan+"-01"); status != 200 {
		t.Fatalf("traced invoke: %d", status)
	}
	// The controller's phase histogram has this one invocation's figures.
	phaseSums := map[string]float64{}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range regexp.MustCompile(`(?m)^wisp_controller_invocation_phase_seconds_sum\{phase="(\w+)"\} (\S+)$`).FindAllStringSubmatch(string(body), -1) {
		phaseSums[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}

	var spans []*tracepb.Span
	byName := map[string]*tracepb.Span{}
	waitFor(t, "the traced invocation's spans", func() bool {
		spans = rec.trace(traceID)
		clear(byName)
		for _, s := range spans {
			byName[s.Name] = s
		}
		return byName["POST /v1/fn/{module}/{function}"] != nil && byName["wisp.dispatch"] != nil && byName["wisp.agent.run"] != nil
	})
	rest, dispatch := byName["POST /v1/fn/{module}/{function}"], byName["wisp.dispatch"]
	if got := hex.EncodeToString(rest.ParentSpanId); got != callerSpan {
		t.Errorf("the REST span's parent is %q, want the caller's span %s", got, callerSpan)
	}
	if rest.Kind != tracepb.Span_SPAN_KIND_SERVER || attr(rest, "http.response.status_code") != "200" ||
		attr(rest, "wisp.module") != "_" || attr(rest, "wisp.function") != "hello" {
		t.Errorf("REST span: kind %v, attributes %v", rest.Kind, rest.Attributes)
	}
	sched := byName["wisp.schedule"]
	if sched == nil || !bytes.Equal(sched.ParentSpanId, rest.SpanId) {
		t.Errorf("no scheduling span under the REST span: %v", sched)
	}
	if !bytes.Equal(dispatch.ParentSpanId, rest.SpanId) {
		t.Errorf("the dispatch span's parent is %x, want the REST span %x", dispatch.ParentSpanId, rest.SpanId)
	}
	act := attr(dispatch, "wisp.activation_id")
	if act == "" || attr(dispatch, "wisp.agent.name") != "edge" || attr(dispatch, "wisp.agent.id") == "" ||
		attr(dispatch, "wisp.module") != "_" || attr(dispatch, "wisp.function") != "hello" || attr(dispatch, "wisp.result") != "ok" {
		t.Errorf("dispatch span attributes: %v", dispatch.Attributes)
	}
	if dispatch.StartTimeUnixNano < rest.StartTimeUnixNano || dispatch.EndTimeUnixNano > rest.EndTimeUnixNano {
		t.Errorf("dispatch [%d, %d] is not within the REST span [%d, %d]", dispatch.StartTimeUnixNano, dispatch.EndTimeUnixNano, rest.StartTimeUnixNano, rest.EndTimeUnixNano)
	}
	phases := 0
	for _, s := range spans {
		phase, ok := strings.CutPrefix(s.Name, "wisp.agent.")
		if !ok {
			continue
		}
		phases++
		if !bytes.Equal(s.ParentSpanId, dispatch.SpanId) {
			t.Errorf("phase %s is not a child of dispatch", s.Name)
		}
		if attr(s, "wisp.activation_id") != act || attr(s, "wisp.agent.name") != "edge" {
			t.Errorf("phase %s attributes: %v", s.Name, s.Attributes)
		}
		us, _ := strconv.ParseInt(attr(s, "wisp.duration_us"), 10, 64)
		if d := int64(s.EndTimeUnixNano - s.StartTimeUnixNano); d != us*1000 {
			t.Errorf("phase %s lasts %dns, its reported figure is %dµs", s.Name, d, us)
		}
		if want, ok := phaseSums[phase]; !ok || math.Abs(want*1e6-float64(us)) > 0.5 {
			t.Errorf("phase %s: span says %dµs, the controller's histogram %vs (%v)", phase, us, want, ok)
		}
		if s.StartTimeUnixNano < dispatch.StartTimeUnixNano || s.EndTimeUnixNano > dispatch.EndTimeUnixNano {
			t.Errorf("phase %s is outside its dispatch span", s.Name)
		}
	}
	if phases == 0 {
		t.Error("no agent phase spans")
	}

	// Without traceparent, and with a malformed one: the call succeeds and
	// starts a trace of its own, the REST span as its root.
	before := len(rec.roots())
	for _, tp := range []string{"", "00-not-a-trace-parent-01", "00-" + strings.ToUpper(traceID) + "-" + callerSpan + "-01"} {
		if status, _ := invokeWithHeader(t, c, "/v1/fn/_/hello", tp); status != 200 {
			t.Fatalf("invoke with traceparent %q: %d", tp, status)
		}
	}
	waitFor(t, "three new traces", func() bool { return len(rec.roots()) == before+3 })
	for id, root := range rec.roots() {
		if id == traceID {
			t.Errorf("the caller's trace has a root span %s here: its root is the caller's", root.Name)
		}
		if root.Name != "POST /v1/fn/{module}/{function}" {
			t.Errorf("a root span %q", root.Name)
		}
	}
	// An unsampled caller's trace is carried on, not exported.
	const unsampled = "0af7651916cd43dd8448eb211c80319c"
	if status, _ := invokeWithHeader(t, c, "/v1/fn/_/hello", "00-"+unsampled+"-b7ad6b7169203331-00"); status != 200 {
		t.Fatalf("unsampled invoke: %d", status)
	}
	if status, _ := invokeWithHeader(t, c, "/v1/fn/_/hello", ""); status != 200 { // a marker after it
		t.Fatal(status)
	}
	waitFor(t, "the marker's trace", func() bool { return len(rec.roots()) == before+4 })
	if s := rec.trace(unsampled); len(s) != 0 {
		t.Errorf("%d spans exported for an unsampled trace", len(s))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) > 0 {
		t.Errorf("the receiver refused requests: %v", rec.errs)
	}
}

// TestTracesStuckReceiver: a receiver that never answers neither slows
// nor fails invocations: spans wait in a bounded queue and are dropped
// past it.
func TestTracesStuckReceiver(t *testing.T) {
	stop := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(stop)
	c := startController(t, t.TempDir(), "", "127.0.0.1:0", "--otlp-endpoint", stuck.URL, "--metrics-addr", "127.0.0.1:0")
	startAgent(t, c, c.joinToken(t, ""), "edge", t.TempDir())
	c.upload(t, "_", "hello", "hello_c", nil)
	var worst time.Duration
	for i := range 50 {
		status, d := invokeWithHeader(t, c, "/v1/fn/_/hello", "")
		if status != 200 {
			t.Fatalf("call %d: %d", i, status)
		}
		worst = max(worst, d)
	}
	// The exporter's request timeout is 5s: a call that waited for it
	// would take that long.
	if worst > 2*time.Second {
		t.Errorf("the slowest of 50 calls took %s with a stuck OTLP receiver", worst)
	}
	t.Logf("slowest of 50 calls with a stuck receiver: %s", worst)
}

// TestTracesEdgeActivation: a local-API caller's traceparent travels in the
// outbox entry; the controller exports the edge activation's span, a child
// of the caller's, with the agent's timing, once the entry arrives — also
// after a partition. A malformed traceparent is ignored.
func TestTracesEdgeActivation(t *testing.T) {
	rec := startOTLPReceiver(t)
	dir, edgeDir := t.TempDir(), t.TempDir()
	c := startController(t, dir, "", "127.0.0.1:0", "--otlp-endpoint", rec.URL)
	edge := startEdgeAgent(t, c.quic, c.joinToken(t, ""), edgeDir)
	localURL := edge.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(edgeDir, "local.token"))
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	waitFor(t, "the function on the agent", func() bool {
		status, _ := localInvoke(t, localURL, localToken, "hello", `{"args":{}}`)
		return status == 200
	})

	localTraced := func(traceparent string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+localURL+"/v1/fn/_/hello", strings.NewReader(`{"args":{"name":"Ada"}}`))
		req.Header.Set("Authorization", "Bearer "+localToken)
		req.Header.Set("traceparent", traceparent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("local invoke: %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Wisp-Activation-Id")
	}

	// Connected: the entry arrives at once.
	const trace1, trace2, caller = "0af7651916cd43dd8448eb211c80319c", "1af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	id1 := localTraced("00-" + trace1 + "-" + caller + "-01")
	// Partitioned: it arrives after the heal.
	quic := c.quic
	c.Stop()
	id2 := localTraced("00-" + trace2 + "-" + caller + "-01")
	bad := localTraced("00-NOT-A-TRACE-PARENT")
	c = startController(t, dir, "", quic, "--otlp-endpoint", rec.URL)

	for _, w := range []struct{ trace, id string }{{trace1, id1}, {trace2, id2}} {
		var spans []*tracepb.Span
		waitFor(t, "the edge activation's span", func() bool {
			spans = rec.trace(w.trace)
			return len(spans) > 0
		})
		s := spans[0]
		if len(spans) != 1 || s.Name != "wisp.edge.activation" || hex.EncodeToString(s.ParentSpanId) != caller ||
			attr(s, "wisp.activation_id") != w.id || attr(s, "wisp.source") != "local-api" || attr(s, "wisp.function") != "hello" {
			t.Fatalf("trace %s: %d spans, first %q parent %x attrs %v", w.trace, len(spans), s.Name, s.ParentSpanId, s.Attributes)
		}
		if s.EndTimeUnixNano <= s.StartTimeUnixNano {
			t.Fatalf("span times %d..%d", s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
	}
	// The malformed one made no trace: every received span belongs to
	// the two traces above.
	waitFor(t, "the malformed call's record", func() bool {
		status, _ := c.do(t, "GET", "/v1/activations/"+bad, nil, "")
		return status == 200
	})
	for id := range rec.roots() {
		t.Errorf("unexpected root span in trace %s", id)
	}
}
