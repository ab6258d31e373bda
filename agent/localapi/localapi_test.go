package localapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/activation"
	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/testing/testopenapi"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

type env struct {
	url, token string
	st         *state.State
	exec       *executor.Executor
	// spec checks every request post sends, and its answer, against
	// openapi/openapi.yaml: the local API serves the controller's routes.
	spec *testopenapi.Checker
}

func start(t testing.TB) *env {
	t.Helper()
	return startWith(t, runtime.Config{})
}

// startWith is start with a runtime configured by cfg (CacheDir is set).
func startWith(t testing.TB, cfg runtime.Config) *env {
	t.Helper()
	dir := t.TempDir()
	cfg.CacheDir = dir
	rt, err := runtime.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	var fs []protocol.DesiredFunction
	for _, f := range []string{"hello_c", "guest_error", "trap", "loop"} {
		code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", f+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		d := runtime.Digest(code)
		if err := st.PutCode(d, code); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, protocol.DesiredFunction{Module: "_", Name: f, Digest: d})
	}
	fs = append(fs, protocol.DesiredFunction{Module: "_", Name: "missing_code", Digest: "sha256:00"})
	if err := st.SetDesired(fs); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := LoadOrCreateToken(dir); again != tok {
		t.Fatal("token changed on reload")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "local.token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode())
	}
	ex := executor.New(rt, st, nil, nil)
	t.Cleanup(func() { // after every server serve started has stopped
		rt.Close(context.Background())
		st.Close()
	})
	e := &env{token: tok, st: st, exec: ex}
	e.url = e.serve(t, Config{Token: tok})
	e.spec = testopenapi.Load(t, e.url)
	return e
}

// runner returns an activation runner over e's executor and state,
// recording into rec (nil: the state's outbox).
func (e *env) runner(t testing.TB, rec activation.Recorder) *activation.Runner {
	t.Helper()
	r, err := activation.New(activation.Config{Executor: e.exec, State: e.st, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// serve runs a Server with cfg (with e's runner unless cfg has one, and
// the runtime's input limit) until the test ends, and returns its base URL.
func (e *env) serve(t testing.TB, cfg Config) string {
	t.Helper()
	if cfg.Runner == nil {
		cfg.Runner = e.runner(t, nil)
	}
	cfg.MaxInputBytes = e.exec.Runtime().Limits().InputBytes
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// post sends a request to e's server and checks it and its answer against
// openapi/openapi.yaml (the request only when it is meant to be valid).
func (e *env) post(t testing.TB, path, token, body string) (int, string) {
	t.Helper()
	return e.postTo(t, e.url, path, token, body, true)
}

// postTo is post to the server at url, checking the request against the
// document only when valid is set (a request meant to break it is not).
func (e *env) postTo(t testing.TB, url, path, token, body string, valid bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	spec := e.spec
	if url != e.url {
		spec = testopenapi.Load(t, url)
	}
	spec.Check(t, req, []byte(body), valid, resp, b)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestLocalInvoke(t *testing.T) {
	e := start(t)
	tests := []struct {
		name, path, token, body string
		status                  int
		want                    string
		breaksSpec              bool // the request itself is outside openapi.yaml
	}{
		{"hello", "/v1/fn/_/hello_c", e.token, `{"args":{"name":"Ada"}}`, 200, `{"data":{"payload":"Hello Ada!"}}`, false},
		{"no body", "/v1/fn/_/hello_c", e.token, ``, 200, `{"data":{"payload":"Hello World!"}}`, false},
		{"guest error", "/v1/fn/_/guest_error", e.token, `{}`, 422, `{"errors":{"detail":"Error: something went wrong"}}`, false},
		{"trap", "/v1/fn/_/trap", e.token, `{}`, 500, `integer divide by zero`, false},
		{"unknown function", "/v1/fn/_/nope", e.token, `{}`, 404, `Function _/nope not found on this agent`, false},
		{"code not here", "/v1/fn/_/missing_code", e.token, `{}`, 503, `not on this agent`, false},
		{"no token", "/v1/fn/_/hello_c", "", `{}`, 401, `Missing or invalid token`, false},
		{"wrong token", "/v1/fn/_/hello_c", "wispl_nope", `{}`, 401, `Missing or invalid token`, false},
		{"bad JSON", "/v1/fn/_/hello_c", e.token, `{"args":`, 400, `Invalid JSON body`, true},
		{"args not object", "/v1/fn/_/hello_c", e.token, `{"args":[1]}`, 400, `args must be a JSON object`, true},
		{"bad name", "/v1/fn/_/bad-name", e.token, `{}`, 422, `alphanumeric`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.postTo(t, e.url, tt.path, tt.token, tt.body, !tt.breaksSpec)
			if status != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s, want %d containing %s", status, body, tt.status, tt.want)
			}
		})
	}
	// Every activation that ran (ok, guest error, trap) is in the outbox;
	// refused requests and the one without code are not.
	entries, err := e.st.Outbox(100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.Function+":"+en.Code.String())
		if en.Source != "local-api" || len(en.ActivationID) != 26 {
			t.Errorf("entry %+v", en)
		}
	}
	want := []string{"hello_c:ok", "hello_c:ok", "guest_error:guest error", "trap:trap"}
	if !slices.Equal(got, want) {
		t.Fatalf("outbox %v, want %v", got, want)
	}
	if !bytes.Equal(entries[0].Output, []byte(`{"payload":"Hello Ada!"}`)) {
		t.Fatalf("output %s", entries[0].Output)
	}
}

// TestBanner: GET /v1/ answers as openapi.yaml's banner operation says.
func TestBanner(t *testing.T) {
	e := start(t)
	req, _ := http.NewRequest("GET", e.url+"/v1/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "up and running") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	e.spec.Check(t, req, nil, true, resp, b)
	if !e.spec.Seen("banner", 200) {
		t.Fatal("GET /v1/ was not checked against openapi.yaml")
	}
}

// BenchmarkLocalInvoke: the agent's local API, warm C hello function, one
// client, in the default mode (the answer waits for the outbox fsync) and
// unsynced, beside floors measured in the same run: the same call with an
// outbox that records nothing (HTTP + runtime), and one fsync of a
// small overwrite in the same directory (the disk).
func BenchmarkLocalInvoke(b *testing.B) {
	e := start(b)
	serve := func(cfg Config) string {
		cfg.Token = "t"
		return e.serve(b, cfg)
	}
	client := &http.Client{}
	call := func(url string) time.Duration {
		req, _ := http.NewRequest("POST", url+"/v1/fn/_/hello_c", strings.NewReader(`{"args":{"name":"Ada"}}`))
		req.Header.Set("Authorization", "Bearer t")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
		return time.Since(t0)
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync-floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.Write(make([]byte, 4096))
	f.Sync()
	fsync := func() time.Duration {
		t0 := time.Now()
		f.WriteAt(make([]byte, 150), 0)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	synced, unsynced, nothing := serve(Config{}), serve(Config{Unsynced: true}), serve(Config{Runner: e.runner(b, nopRecorder{e.st})})
	p50 := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds())
	}
	var ls, lu, ln, lf []time.Duration
	// Each iteration runs the four in a fresh random order: a call measured
	// right after an fsync pays for waking an idle CPU, and a fixed order
	// would charge that to one of them only.
	steps := []func(){
		func() { ls = append(ls, call(synced)) },
		func() { lu = append(lu, call(unsynced)) },
		func() { ln = append(ln, call(nothing)) },
		func() { lf = append(lf, fsync()) },
	}
	for b.Loop() {
		rand.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
		for _, step := range steps {
			step()
		}
	}
	b.ReportMetric(p50(ls), "fsync-p50-µs")
	b.ReportMetric(float64(ls[len(ls)*99/100].Microseconds()), "fsync-p99-µs")
	b.ReportMetric(p50(lu), "unsynced-p50-µs")
	b.ReportMetric(p50(ln), "floor-http+run-p50-µs")
	b.ReportMetric(p50(lf), "floor-fsync-p50-µs")
	b.ReportMetric(p50(ls)/(p50(ln)+p50(lf)), "fsync-x-floors")
}

type nopRecorder struct{ *state.State }

func (nopRecorder) AppendOutboxKeyed(*protocol.OutboxEntry, []byte) error { return nil }
func (nopRecorder) AppendOutboxUnsynced(*protocol.OutboxEntry) error      { return nil }

// spyRecorder counts which append each activation used.
type spyRecorder struct {
	*state.State
	mu             sync.Mutex
	synced, unsync int
}

func (r *spyRecorder) AppendOutboxKeyed(*protocol.OutboxEntry, []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced++
	return nil
}

func (r *spyRecorder) AppendOutboxUnsynced(*protocol.OutboxEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unsync++
	return nil
}

// TestUnsynced: with Config.Unsynced, API calls skip the fsync wait;
// without it they wait. (That trigger activations never skip it is
// agent/activation's test.)
func TestUnsynced(t *testing.T) {
	e := start(t)
	for _, unsynced := range []bool{false, true} {
		spy := &spyRecorder{State: e.st}
		url := e.serve(t, Config{Token: "t", Runner: e.runner(t, spy), Unsynced: unsynced})
		if status, body := e.postTo(t, url, "/v1/fn/_/hello_c", "t", `{}`, true); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		want := [2]int{1, 0}
		if unsynced {
			want = [2]int{0, 1}
		}
		if got := [2]int{spy.synced, spy.unsync}; got != want {
			t.Fatalf("unsynced=%v: synced/unsynced appends %v, want %v", unsynced, got, want)
		}
	}
}

type failingRecorder struct{ *state.State }

func (failingRecorder) AppendOutboxKeyed(*protocol.OutboxEntry, []byte) error {
	return errors.New("disk full")
}

func (failingRecorder) AppendOutboxUnsynced(*protocol.OutboxEntry) error {
	return errors.New("disk full")
}

// TestNotRecordedIs500: a call whose activation could not be recorded is
// not answered as a success.
func TestNotRecordedIs500(t *testing.T) {
	e := start(t)
	url := e.serve(t, Config{Token: "t", Runner: e.runner(t, failingRecorder{e.st})})
	if status, body := e.postTo(t, url, "/v1/fn/_/hello_c", "t", `{}`, true); status != 500 || !strings.Contains(body, "could not be recorded") || !strings.Contains(body, "disk full") {
		t.Fatalf("failed append: %d %s", status, body)
	}
}

// TestOverloadedIs503: a call refused because its function's queue on the
// agent is full gets 503 (it did not run) and is not in the outbox, and
// another function still answers.
func TestOverloadedIs503(t *testing.T) {
	e := startWith(t, runtime.Config{MaxPerFunction: 1, MaxQueuedPerFunction: 1})
	r := e.runner(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 { // one runs, one waits
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Run(ctx, activation.Request{Module: "_", Function: "loop", Args: []byte(`{}`)})
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	testwait.For(t, 30*time.Second, "one running and one queued loop call", func() bool {
		st := e.exec.Runtime().Stats()
		return st.Busy == 1 && st.Waiting == 1
	})
	if status, body := e.post(t, "/v1/fn/_/loop", e.token, `{}`); status != 503 || !strings.Contains(body, "at its limit on this agent") {
		t.Fatalf("loop with a full queue: %d %s", status, body)
	}
	if status, body := e.post(t, "/v1/fn/_/hello_c", e.token, `{}`); status != 200 {
		t.Fatalf("hello during the flood: %d %s", status, body)
	}
	entries, err := e.st.Outbox(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Function != "hello_c" {
		t.Fatalf("outbox %+v: the refused call must not be there", entries)
	}
}

// TestTooLargeAndQuarantined: args over the runtime's input limit are 413
// before anything runs or is recorded; a quarantined function is 423,
// saying why, and its refusal is recorded.
func TestTooLargeAndQuarantined(t *testing.T) {
	e := start(t)
	limit := e.exec.Runtime().Limits().InputBytes
	big := `{"args":{"s":"` + strings.Repeat("x", limit) + `"}}`
	if status, body := e.post(t, "/v1/fn/_/hello_c", e.token, big); status != 413 || !strings.Contains(body, "input limit") {
		t.Fatalf("args over the limit: %d %s", status, body)
	}
	if n := e.st.OutboxLen(); n != 0 {
		t.Fatalf("the refused call was recorded (%d entries)", n)
	}
	hello, _ := e.st.DesiredFunction("_", "hello_c")
	if _, err := e.st.SetQuarantine([]protocol.QuarantineEntry{{Digest: hello.Digest, Reason: "the agent died while running this code", SinceUnixMS: 1}}); err != nil {
		t.Fatal(err)
	}
	status, body := e.post(t, "/v1/fn/_/hello_c", e.token, `{}`)
	if status != 423 || !strings.Contains(body, "quarantined") || !strings.Contains(body, "died while running") {
		t.Fatalf("quarantined function: %d %s", status, body)
	}
	entries, err := e.st.Outbox(100)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Function != "hello_c" || last.Code != protocol.Quarantined {
		t.Fatalf("last outbox entry %+v, want hello_c refused as quarantined", last)
	}
	// Another function still runs.
	if status, body := e.post(t, "/v1/fn/_/guest_error", e.token, `{}`); status != 422 {
		t.Fatalf("another function: %d %s", status, body)
	}
}

// TestLocalInvokeNamesActivation: every answer of an activation that was
// recorded (ok, the function's error, a trap) carries its id in
// X-Wisp-Activation-Id, the outbox entry's id, beside an unchanged
// envelope; answers without an activation carry none.
func TestLocalInvokeNamesActivation(t *testing.T) {
	e := start(t)
	tests := []struct {
		path   string
		status int
		body   string // the whole envelope, when set
		header bool
	}{
		{"/v1/fn/_/hello_c", 200, `{"data":{"payload":"Hello World!"}}`, true},
		{"/v1/fn/_/guest_error", 422, `{"errors":{"detail":"Error: something went wrong"}}`, true},
		{"/v1/fn/_/trap", 500, "", true},
		{"/v1/fn/_/nope", 404, "", false},
		{"/v1/fn/_/missing_code", 503, "", false},
	}
	var ids []string
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", e.url+tt.path, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+e.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.spec.Check(t, req, []byte(`{}`), true, resp, b)
		id := resp.Header.Get(ActivationHeader)
		if resp.StatusCode != tt.status || (tt.body != "" && strings.TrimSpace(string(b)) != tt.body) {
			t.Fatalf("%s: %d %s", tt.path, resp.StatusCode, b)
		}
		if (id != "") != tt.header || (tt.header && len(id) != 26) {
			t.Fatalf("%s: %s = %q, want one: %v", tt.path, ActivationHeader, id, tt.header)
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	entries, err := e.st.Outbox(100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.ActivationID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("outbox ids %v, headers %v", got, ids)
	}
}

func TestTraceParentShape(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for h, want := range map[string]string{
		good: good,
		"":   "",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":           "", // another version
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":           "", // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra":     "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01":           "",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01":           "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u00e9"[:55]: "",
	} {
		if got := traceParent(h); got != want {
			t.Errorf("traceParent(%q) = %q, want %q", h, got, want)
		}
	}
}
