package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
)

// TestFunLessFlow walks every route of FUNLESS.md through real HTTP, on each
// store, and checks that every operation of openapi.yaml was exercised.
func TestFunLessFlow(t *testing.T) {
	t.Parallel()
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, ts.open(t), func(c *Config) {
				c.Agents = fakeAgents{{ID: "ag_01", Name: "edge", Connected: false, Controllers: []string{}, OS: "linux", Arch: "arm",
					Engine: "interpreter", Labels: []string{}, LastSeen: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}}
				c.JoinTokens = &fakeTokens{}
				c.AgentControl = fakeControl{}
				c.Quarantine = &fakeQuarantine{entries: []fleet.QuarantineInfo{{Digest: "sha256:" + strings.Repeat("cd", 32),
					State: fleet.QuarantineStateQuarantined, Reason: "the agent died while running this code", Since: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}}
			})
			testFlow(t, e)
			testBadInput(t, e)
			// Agents and join tokens (their behaviour: TestDistributionAndAgents).
			status, body := e.do(req{method: "GET", path: "/v1/agents"})
			wantData[[]map[string]any](t, status, body, 200)
			status, body = e.do(req{method: "POST", path: "/v1/admin/tokens"})
			wantData[fleet.JoinTokenInfo](t, status, body, 201)
			// (their behaviour: TestJoinTokenListRevoke)
			status, body = e.do(req{method: "GET", path: "/v1/admin/tokens"})
			wantData[[]JoinTokenState](t, status, body, 200)
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/tokens/jt_00"})
			wantError(t, status, body, 404, "jt_00")
			// The quarantine (its behaviour: TestQuarantineRoutes).
			status, body = e.do(req{method: "GET", path: "/v1/admin/quarantine"})
			if got := wantData[[]fleet.QuarantineInfo](t, status, body, 200); len(got) != 1 {
				t.Fatalf("quarantine list = %s", body)
			}
			if status, body = e.do(req{method: "DELETE", path: "/v1/admin/quarantine/sha256:" + strings.Repeat("cd", 32)}); status != 204 {
				t.Fatalf("quarantine release = %d %s", status, body)
			}
			reachVersions(t, e)     // (their behaviour: TestVersionsAndRollback)
			reachAgentControl(t, e) // (their behaviour: TestAgentControl)
			testActivations(t, e)
			// Secrets (their behaviour: TestSecrets).
			status, body = e.do(req{method: "PUT", path: "/v1/secrets/_/K", body: []byte(`{"value":"v"}`), contentType: "application/json"})
			wantData[secretInfo](t, status, body, 200)
			status, body = e.do(req{method: "GET", path: "/v1/secrets/_"})
			wantData[[]secretInfo](t, status, body, 200)
			if status, body = e.do(req{method: "DELETE", path: "/v1/secrets/_/K"}); status != 204 {
				t.Fatalf("DELETE secret = %d %s", status, body)
			}
			if miss := e.spec.Missing(); len(miss) > 0 {
				t.Errorf("operations of openapi.yaml no test request reached: %v", miss)
			}
		})
	}
}

func testFlow(t *testing.T, e *env) {
	// The banner needs no token.
	status, body := e.do(req{method: "GET", path: "/v1/", token: noToken})
	if status != 200 || !strings.Contains(string(body), "up and running") {
		t.Fatalf("GET /v1/ = %d %q", status, body)
	}
	// So do the probes (their behaviour: TestHealthProbes).
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, body := e.do(req{method: "GET", path: p, token: noToken}); status != 200 || string(body) != "ok\n" {
			t.Fatalf("GET %s = %d %q", p, status, body)
		}
	}

	names := func(items []nameItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.Name)
		}
		return out
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn"})
	if got := names(wantData[[]nameItem](t, status, body, 200)); !slices.Equal(got, []string{"_"}) {
		t.Fatalf("modules = %v", got)
	}
	status, body = e.json("POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "m"}})
	if got := wantData[nameItem](t, status, body, 201); got.Name != "m" {
		t.Fatalf("created %v", got)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn"})
	if got := names(wantData[[]nameItem](t, status, body, 200)); !slices.Equal(got, []string{"_", "m"}) {
		t.Fatalf("modules = %v", got)
	}

	// Function create with events, sinks and metadata.
	hello := fixture(t, "hello_c.wasm")
	status, body = e.upload("POST", "/v1/fn/m",
		part{name: "name", value: "hello"},
		part{name: "events", value: `[{"type":"mqtt","params":{"host":"broker","port":"1883","topic":"t"}},` +
			`{"type":"timer","params":{"cron":"*/5  * * * MON-fri"}},{"type":"timer","params":{"every":"90s","local":true}}]`},
		part{name: "sinks", value: `[{"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"p"}}]`},
		part{name: "metadata", value: `{"tag":"edge","capacity":2048}`},
		part{name: "wait_for_workers", value: "false"},
		codePart(hello))
	if got := wantData[nameItem](t, status, body, 201); got.Name != "hello" {
		t.Fatalf("created %v", got)
	}
	// And one in the default module, with nothing optional.
	status, body = e.upload("POST", "/v1/fn/_", part{name: "name", value: "wat"}, part{name: "wait_for_workers", value: "1"}, codePart(fixture(t, "hello_wat.wasm")))
	wantData[nameItem](t, status, body, 201)

	status, body = e.do(req{method: "GET", path: "/v1/fn/m/hello"})
	fn := wantData[map[string]json.RawMessage](t, status, body, 200)
	wantJSON := map[string]string{
		"name":   `"hello"`,
		"module": `"m"`,
		"digest": `"` + runtime.Digest(hello) + `"`,
		"abi":    `"funless-v1"`,
		"events": `[{"type":"mqtt","params":{"host":"broker","port":1883,"topic":"t"}},` +
			`{"type":"timer","params":{"cron":"*/5 * * * MON-fri"}},{"type":"timer","params":{"every":"1m30s","local":true}}]`,
		"sinks":    `[{"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"********"}}]`,
		"metadata": `{"tag":"edge","capacity":2048}`,
	}
	for k, v := range wantJSON {
		if string(fn[k]) != v {
			t.Errorf("function %s = %s, want %s", k, fn[k], v)
		}
	}
	var size int
	if json.Unmarshal(fn["size"], &size); size != len(hello) {
		t.Errorf("size = %s, want %d", fn["size"], len(hello))
	}
	// The store keeps the sink password (sinks need it).
	if sf, err := e.st.GetFunction(context.Background(), "m", "hello"); err != nil || len(sf.Spec.Sinks) != 1 || sf.Spec.Sinks[0].Params.Password != "p" {
		t.Errorf("stored sinks = %+v, %v", sf.Spec.Sinks, err)
	}

	status, body = e.do(req{method: "GET", path: "/v1/fn/m"})
	mod := wantData[moduleInfo](t, status, body, 200)
	if mod.Name != "m" || !slices.Equal(names(mod.Functions), []string{"hello"}) {
		t.Fatalf("module = %+v", mod)
	}

	// Update replaces code and clears what is not sent.
	wat := fixture(t, "hello_wat.wasm")
	status, body = e.upload("PUT", "/v1/fn/m/hello", part{name: "name", value: "hello"}, part{name: "metadata", value: `{"capacity":0}`}, codePart(wat))
	if got := wantData[nameItem](t, status, body, 200); got.Name != "hello" {
		t.Fatalf("updated %v", got)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn/m/hello"})
	fi := wantData[functionInfo](t, status, body, 200)
	raw := wantData[map[string]json.RawMessage](t, status, body, 200)
	if fi.Digest != runtime.Digest(wat) || fi.Size != int64(len(wat)) || string(raw["events"]) != "[]" || string(raw["sinks"]) != "[]" || string(raw["metadata"]) != `{"capacity":0}` {
		t.Fatalf("after update: %s", body)
	}

	// Invoke: no agents yet.
	status, body = e.json("POST", "/v1/fn/m/hello", map[string]any{"args": map[string]string{"name": "Ada"}})
	wantError(t, status, body, 503, "No worker available")
	status, body = e.do(req{method: "POST", path: "/v1/fn/m/hello"})
	wantError(t, status, body, 503, "No worker available")
	status, body = e.json("POST", "/v1/fn/m/hello", map[string]any{"scheduling": map[string]string{"language": "app", "script": "s"}})
	wantError(t, status, body, 503, "No worker available")

	// Rename keeps functions.
	status, body = e.json("PUT", "/v1/fn/m", map[string]any{"module": map[string]string{"name": "n"}})
	if got := wantData[nameItem](t, status, body, 200); got.Name != "n" {
		t.Fatalf("renamed %v", got)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn/n/hello"})
	wantData[functionInfo](t, status, body, 200)
	status, body = e.do(req{method: "GET", path: "/v1/fn/m"})
	wantError(t, status, body, 404, "Module m not found")

	status, body = e.do(req{method: "DELETE", path: "/v1/fn/n/hello"})
	if status != 204 || len(body) != 0 {
		t.Fatalf("DELETE function = %d %q", status, body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn/n/hello"})
	wantError(t, status, body, 404, "not found")

	// Deleting a module deletes its functions.
	e.upload("POST", "/v1/fn/n", part{name: "name", value: "again"}, codePart(wat))
	status, _ = e.do(req{method: "DELETE", path: "/v1/fn/n"})
	if status != 204 {
		t.Fatalf("DELETE module = %d", status)
	}
	if fns, _ := e.st.ListFunctions(context.Background()); len(fns) != 1 || fns[0].Name != "wat" {
		t.Fatalf("functions after module delete: %+v", fns)
	}

	// APP scripts.
	app := "- edge:\n    - workers: [pi1, pi2]\n      strategy: best-first\n      invalidate: {capacity_used: 50%, max_concurrent_invocations: 3}\n  followup: default\n- default:\n    - workers: \"*\"\n"
	status, body = e.upload("POST", "/v1/scripts/app", part{name: "name", value: "s"}, part{name: "file", value: app, file: true, filename: "s.yaml"})
	if got := wantData[nameItem](t, status, body, 201); got.Name != "s" {
		t.Fatalf("script created %v", got)
	}
	status, body = e.do(req{method: "GET", path: "/v1/scripts/app"})
	if got := names(wantData[[]nameItem](t, status, body, 200)); !slices.Equal(got, []string{"s"}) {
		t.Fatalf("scripts = %v", got)
	}
	status, body = e.do(req{method: "GET", path: "/v1/scripts/app/s"})
	if got := wantData[scriptInfo](t, status, body, 200); got.Source != app {
		t.Fatalf("script = %+v", got)
	}

	// Subjects: the token is shown once, never listed, and works.
	status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "alice"}})
	created := wantData[newSubject](t, status, body, 201)
	if created.Name != "alice" || !strings.HasPrefix(created.Token, "wisp_") || len(created.Token) != 48 {
		t.Fatalf("subject = %+v", created)
	}
	status, body = e.do(req{method: "GET", path: "/v1/admin/subjects"})
	subs := wantData[[]subjectInfo](t, status, body, 200)
	if strings.Contains(string(body), created.Token) || strings.Contains(string(body), e.admin) || !slices.ContainsFunc(subs, func(s subjectInfo) bool { return s.Name == "alice" && !s.Admin }) {
		t.Fatalf("subjects list = %s", body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn", token: "Bearer " + created.Token})
	wantData[[]nameItem](t, status, body, 200)
	status, body = e.do(req{method: "GET", path: "/v1/admin/subjects", token: "Bearer " + created.Token})
	wantError(t, status, body, 403, "admin")
	// Rotate and delete (their behaviour: TestSubjectsOwnTheirModules).
	status, body = e.do(req{method: "POST", path: "/v1/admin/subjects/alice/rotate"})
	rotated := wantData[newSubject](t, status, body, 200)
	status, body = e.do(req{method: "GET", path: "/v1/fn", token: "Bearer " + created.Token})
	wantError(t, status, body, 401)
	status, body = e.do(req{method: "DELETE", path: "/v1/admin/subjects/alice"})
	if status != 204 {
		t.Fatalf("delete alice = %d %s", status, body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn", token: "Bearer " + rotated.Token})
	wantError(t, status, body, 401)

	// Metrics are the admin's: 401 without a token, 403 for a subject.
	status, body = e.do(req{method: "GET", path: "/metrics", token: noToken})
	wantError(t, status, body, 401, "token")
	status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "metrics_reader"}})
	reader := wantData[newSubject](t, status, body, 201)
	status, body = e.do(req{method: "GET", path: "/metrics", token: "Bearer " + reader.Token})
	wantError(t, status, body, 403, "admin")
	// With the admin token, they count requests by route pattern and status.
	status, body = e.do(req{method: "GET", path: "/metrics"})
	for _, want := range []string{`wisp_http_requests_total{method="GET",route="/v1/fn/:mod/:fn",status="200"}`, "go_goroutines", "wisp_http_request_duration_seconds_bucket"} {
		if status != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("/metrics = %d, lacks %s:\n%.2000s", status, want, body)
		}
	}
}

// fakeInvoker records requests and answers with its fields.
type fakeInvoker struct {
	mu   sync.Mutex
	reqs []invoke.Request
	out  json.RawMessage
	err  error
}

func (f *fakeInvoker) Invoke(_ context.Context, r invoke.Request) (invoke.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
	return invoke.Result{Output: f.out}, f.err
}

func TestInvokeThroughInvoker(t *testing.T) {
	t.Parallel()
	inv := &fakeInvoker{out: json.RawMessage(`{"payload":"Hello Ada!"}`)}
	e := start(t, openEmbedded(t), func(c *Config) { c.Invoker = inv })
	hello := fixture(t, "hello_c.wasm")
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "hello"}, part{name: "metadata", value: `{"tag":"edge"}`}, codePart(hello))
	wantData[nameItem](t, status, body, 201)

	status, body = e.do(req{method: "POST", path: "/v1/fn/_/hello", contentType: "application/json",
		body: []byte(`{"args": {"name": "Ada",  "n": [1, 2]}, "scheduling": {"language":"app","script":"s"}}`)})
	if got := wantData[map[string]string](t, status, body, 200); got["payload"] != "Hello Ada!" {
		t.Fatalf("invoke = %s", body)
	}
	status, body = e.do(req{method: "POST", path: "/v1/fn/_/hello"})
	wantData[map[string]string](t, status, body, 200)
	want := []invoke.Request{
		{Module: "_", Function: "hello", Digest: runtime.Digest(hello), Metadata: fnspec.Metadata{Tag: "edge"}, Args: json.RawMessage(`{"name":"Ada","n":[1,2]}`), Scheduling: invoke.Scheduling{Language: "app", Script: "s"}},
		{Module: "_", Function: "hello", Digest: runtime.Digest(hello), Metadata: fnspec.Metadata{Tag: "edge"}, Args: json.RawMessage(`{}`)},
	}
	if len(inv.reqs) != 2 {
		t.Fatalf("invoker got %d requests", len(inv.reqs))
	}
	for i := range want {
		g, w := inv.reqs[i], want[i]
		if g.Module != w.Module || g.Function != w.Function || g.Digest != w.Digest || g.Metadata != w.Metadata || string(g.Args) != string(w.Args) || g.Scheduling != w.Scheduling {
			t.Errorf("request %d = %+v (args %s), want %+v (args %s)", i, g, g.Args, w, w.Args)
		}
	}

	// Unknown functions never reach the invoker.
	status, body = e.do(req{method: "POST", path: "/v1/fn/_/nope"})
	wantError(t, status, body, 404, "Function _/nope not found")
	if len(inv.reqs) != 2 {
		t.Fatal("the invoker was called for an unknown function")
	}

	for _, tc := range []struct {
		name   string
		err    error
		status int
		detail string
	}{
		{"guest error", invoke.GuestError("something went wrong"), 422, "Error: something went wrong"},
		{"no worker", invoke.ErrNoWorker, 503, "No worker available"},
		{"lost", invoke.Lost("agent edge1 was lost during the invocation; the function may have run", nil), 502, "may have run"},
		{"quarantined", invoke.Quarantined("The function's code is quarantined: agent edge1 died with it"), 423, "quarantined"},
		{"too large for the agent", invoke.TooLarge("agent edge1: input of 5 bytes exceeds the limit"), 413, "exceeds the limit"},
		{"trap", invoke.Failed("the function trapped: integer divide by zero", runtime.ErrTrap), 500, "integer divide by zero"},
		{"other", io.ErrUnexpectedEOF, 500, "Internal server error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv.mu.Lock()
			inv.err = tc.err
			inv.mu.Unlock()
			status, body := e.do(req{method: "POST", path: "/v1/fn/_/hello"})
			wantError(t, status, body, tc.status, tc.detail)
			if tc.name == "other" && strings.Contains(string(body), "EOF") {
				t.Fatalf("internal error leaked: %s", body)
			}
		})
	}
}

// TestShutdownDrains checks that Run finishes in-flight requests after its
// context is cancelled, and then refuses new connections.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{})
	inv := invokerFunc(func(ctx context.Context, r invoke.Request) (invoke.Result, error) {
		close(entered)
		<-release
		return invoke.Result{Output: json.RawMessage(`"done"`)}, nil
	})
	st := openEmbedded(t)
	code := fixture(t, "hello_wat.wasm")
	if _, err := st.CreateFunction(context.Background(), store.Function{Module: "_", Name: "f", Digest: runtime.Digest(code)}, code); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := New(Config{Store: st, Invoker: inv})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, st) // only for its admin token and client
	ln := listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()

	got := make(chan string, 1)
	go func() {
		r, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/fn/_/f", nil)
		r.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	// Run must not return while the request is in flight.
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if b := <-got; b != `{"data":"done"}` {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/v1/"); err == nil {
		t.Fatal("the server still accepts connections after shutdown")
	}
}

type invokerFunc func(context.Context, invoke.Request) (invoke.Result, error)

func (f invokerFunc) Invoke(ctx context.Context, r invoke.Request) (invoke.Result, error) {
	return f(ctx, r)
}

// unreadableStore reads every function as if its stored sinks did not
// parse (fnspec's "Bad stored data").
type unreadableStore struct{ store.Store }

func (u unreadableStore) GetFunction(ctx context.Context, module, name string) (store.Function, error) {
	fn, err := u.Store.GetFunction(ctx, module, name)
	if err == nil {
		fn.Spec.Sinks = nil
		fn.Unreadable = &fnspec.Error{Field: "sinks", Reason: "type \"ftp\" is not supported"}
	}
	return fn, err
}

// TestUnreadableSettings: a function whose stored settings are unreadable
// is not run (500, nothing dispatched), and is still shown and updated.
func TestUnreadableSettings(t *testing.T) {
	t.Parallel()
	inv := &fakeInvoker{out: json.RawMessage(`{}`)}
	e := start(t, unreadableStore{openEmbedded(t)}, func(c *Config) { c.Invoker = inv })
	hello := fixture(t, "hello_c.wasm")
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "hello"}, codePart(hello))
	wantData[nameItem](t, status, body, 201)

	status, body = e.do(req{method: "POST", path: "/v1/fn/_/hello", contentType: "application/json", body: []byte(`{"args":{}}`)})
	wantError(t, status, body, 500, "stored settings are unreadable")
	if len(inv.reqs) != 0 {
		t.Fatalf("dispatched %d requests for an unreadable function", len(inv.reqs))
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn/_/hello"})
	if raw := wantData[map[string]json.RawMessage](t, status, body, 200); string(raw["sinks"]) != "[]" {
		t.Fatalf("shown sinks = %s", raw["sinks"])
	}
	status, body = e.upload("PUT", "/v1/fn/_/hello", codePart(hello))
	wantData[nameItem](t, status, body, 200)
}
