package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeApp is an in-memory controller with issue 14's shapes: config in
// function create/update and GET, secrets listed by GET /v1/secrets/{module}.
type fakeApp struct {
	mu       sync.Mutex
	modules  map[string]map[string]map[string]any // module -> function -> GET data
	secrets  map[string][]string
	requests []fakeRequest
}

type fakeRequest struct {
	method, path string
	fields       map[string]string // multipart text fields
}

func (r fakeRequest) write() bool { return r.method != http.MethodGet }

func newFakeApp(t *testing.T) (*fakeApp, string) {
	f := &fakeApp{modules: map[string]map[string]map[string]any{"_": {}}, secrets: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeApp) writes() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if r.write() {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeApp) reset() {
	f.mu.Lock()
	f.requests = nil
	f.mu.Unlock()
}

func (f *fakeApp) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := fakeRequest{method: r.Method, path: r.URL.Path, fields: map[string]string{}}
	answer := func(status int, data any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if data != nil {
			json.NewEncoder(w).Encode(map[string]any{"data": data})
		}
	}
	notFound := func() {
		w.WriteHeader(404)
		io.WriteString(w, `{"errors":{"detail":"not found"}}`)
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	var code []byte
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		if err := r.ParseMultipartForm(1 << 20); err == nil {
			for k, v := range r.MultipartForm.Value {
				rec.fields[k] = v[0]
			}
			if fh := r.MultipartForm.File["code"]; len(fh) > 0 {
				file, _ := fh[0].Open()
				code, _ = io.ReadAll(file)
				file.Close()
			}
		}
	}
	f.requests = append(f.requests, rec)
	store := func(mod, name string) {
		sum := sha256.Sum256(code)
		fn := map[string]any{"name": name, "module": mod, "digest": "sha256:" + hex.EncodeToString(sum[:]), "size": len(code),
			"events": json.RawMessage(orJSON(rec.fields["events"], "[]")), "sinks": json.RawMessage(redactFake(orJSON(rec.fields["sinks"], "[]"))),
			"metadata": json.RawMessage(orJSON(rec.fields["metadata"], "{}")), "config": json.RawMessage(orJSON(rec.fields["config"], "{}"))}
		f.modules[mod][name] = fn
	}
	switch {
	case r.Method == "GET" && len(parts) == 2 && parts[0] == "fn":
		m, ok := f.modules[parts[1]]
		if !ok {
			notFound()
			return
		}
		fns := []map[string]string{}
		for n := range m {
			fns = append(fns, map[string]string{"name": n})
		}
		answer(200, map[string]any{"name": parts[1], "functions": fns})
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "fn":
		fn, ok := f.modules[parts[1]][parts[2]]
		if !ok {
			notFound()
			return
		}
		answer(200, fn)
	case r.Method == "GET" && len(parts) == 2 && parts[0] == "secrets":
		var out []map[string]string
		for _, s := range f.secrets[parts[1]] {
			out = append(out, map[string]string{"name": s})
		}
		answer(200, out)
	case r.Method == "POST" && len(parts) == 1 && parts[0] == "fn":
		var body struct{ Module struct{ Name string } }
		json.NewDecoder(r.Body).Decode(&body)
		f.modules[body.Module.Name] = map[string]map[string]any{}
		answer(201, map[string]string{"name": body.Module.Name})
	case r.Method == "POST" && len(parts) == 2:
		store(parts[1], rec.fields["name"])
		answer(201, map[string]string{"name": rec.fields["name"]})
	case r.Method == "PUT" && len(parts) == 3:
		store(parts[1], parts[2])
		answer(200, map[string]string{"name": parts[2]})
	case r.Method == "DELETE" && len(parts) == 3:
		delete(f.modules[parts[1]], parts[2])
		w.WriteHeader(204)
	default:
		notFound()
	}
}

func orJSON(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// redactFake shows sink passwords as the controller does.
func redactFake(sinks string) string {
	var v []map[string]any
	json.Unmarshal([]byte(sinks), &v)
	for _, s := range v {
		if params, ok := s["params"].(map[string]any); ok && params["password"] != nil && params["password"] != "" {
			params["password"] = "********"
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// deployDir writes a manifest and a copy of hello_c.wasm into a new directory.
func deployDir(t *testing.T, manifest string) string {
	t.Helper()
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "hello_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "hello.wasm", wasm)
	writeFile(t, dir, "wisp.yaml", []byte(manifest))
	return dir
}

// TestDeployRequests checks what deploy sends for the settings issue 14
// adds (config, timers, secret references) against a fake controller.
func TestDeployRequests(t *testing.T) {
	app, url := newFakeApp(t)
	e := homeEnv(t)
	e["WISP_HOST"], e["WISP_TOKEN"] = url, "wisp_tok"
	manifest := `module: shop
functions:
  - name: price
    wasm: ./hello.wasm
    events: [{type: mqtt, params: {topic: shop/price, local: true}}]
    metadata: {tag: edge, capacity: 1024}
    config: {env: {CURRENCY: EUR}, secrets: [API_KEY], allow_hosts: [api.example.com]}
    timers: [{cron: "*/5 * * * *", local: true}, {every: 30s}]
secrets: [API_KEY]
`
	dir := deployDir(t, manifest)
	mf := filepath.Join(dir, "wisp.yaml")

	// The module does not exist: its secrets cannot either.
	code, stdout, stderr := runCLI(t, e, "deploy", "-f", mf)
	if code != ExitError || stdout != "" || !strings.Contains(stderr, "module shop does not exist yet, so it has none of the secrets the manifest needs (API_KEY)") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if w := app.writes(); len(w) != 0 {
		t.Fatalf("writes %+v, want none", w)
	}
	// The module exists but lacks the secret.
	app.modules["shop"] = map[string]map[string]any{}
	code, _, stderr = runCLI(t, e, "deploy", "-f", mf)
	if code != ExitError || !strings.Contains(stderr, "module shop lacks the secret(s) API_KEY: set them with 'wisp secret set' first; nothing was changed") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if w := app.writes(); len(w) != 0 {
		t.Fatalf("writes %+v, want none", w)
	}

	app.secrets["shop"] = []string{"API_KEY", "OTHER"}
	code, stdout, stderr = runCLI(t, e, "deploy", "-f", mf)
	if code != 0 {
		t.Fatalf("deploy: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "function shop/price: created\n") {
		t.Errorf("stdout %q", stdout)
	}
	w := app.writes()
	if len(w) != 1 || w[0].method != "POST" || w[0].path != "/v1/fn/shop" {
		t.Fatalf("writes %+v, want one POST /v1/fn/shop", w)
	}
	for k, want := range map[string]string{
		"name":     "price",
		"config":   `{"env":{"CURRENCY":"EUR"},"secrets":["API_KEY"],"allow_hosts":["api.example.com"]}`,
		"events":   `[{"type":"mqtt","params":{"topic":"shop/price","local":true}},{"type":"timer","params":{"cron":"*/5 * * * *","local":true}},{"type":"timer","params":{"every":"30s"}}]`,
		"metadata": `{"tag":"edge","capacity":1024}`,
	} {
		if got := w[0].fields[k]; got != want {
			t.Errorf("field %s = %s, want %s", k, got, want)
		}
	}
	if _, ok := w[0].fields["sinks"]; ok {
		t.Error("sinks sent although the manifest has none")
	}

	// Again: nothing to write.
	app.reset()
	code, stdout, stderr = runCLI(t, e, "deploy", "-f", mf)
	if code != 0 || !strings.Contains(stdout, "function shop/price: unchanged\n") || !strings.Contains(stdout, "module shop: 1 unchanged\n") {
		t.Fatalf("second deploy: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if w := app.writes(); len(w) != 0 {
		t.Fatalf("second deploy wrote %+v", w)
	}

	// A changed env: dry run shows it, then the deploy sends it.
	changed := strings.Replace(manifest, "CURRENCY: EUR", "CURRENCY: USD", 1)
	changed = strings.Replace(changed, "{every: 30s}", "{every: 1m}", 1)
	writeFile(t, dir, "wisp.yaml", []byte(changed))
	code, stdout, _ = runCLI(t, e, "deploy", "-f", mf, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "function shop/price: would be updated (events, config)\n") ||
		!strings.Contains(stdout, `config: {"env":{"CURRENCY":"EUR"}`) || !strings.Contains(stdout, `-> {"env":{"CURRENCY":"USD"}`) ||
		!strings.Contains(stdout, "(dry run: nothing was changed)") {
		t.Fatalf("dry run: exit %d, stdout:\n%s", code, stdout)
	}
	if w := app.writes(); len(w) != 0 {
		t.Fatalf("dry run wrote %+v", w)
	}
	code, stdout, stderr = runCLI(t, e, "deploy", "-f", mf)
	if code != 0 || !strings.Contains(stdout, "function shop/price: updated (events, config)\n") {
		t.Fatalf("update: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	w = app.writes()
	if len(w) != 1 || w[0].method != "PUT" || w[0].path != "/v1/fn/shop/price" || !strings.Contains(w[0].fields["config"], "USD") ||
		!strings.Contains(w[0].fields["events"], `"every":"1m0s"`) {
		t.Fatalf("writes %+v", w)
	}

	// Dropping the config sends an empty one, so that the function loses it.
	app.reset()
	noConfig := strings.Replace(changed, "    config: {env: {CURRENCY: USD}, secrets: [API_KEY], allow_hosts: [api.example.com]}\n", "", 1)
	writeFile(t, dir, "wisp.yaml", []byte(noConfig))
	if code, _, stderr := runCLI(t, e, "deploy", "-f", mf); code != 0 {
		t.Fatal(stderr)
	}
	if w := app.writes(); len(w) != 1 || w[0].fields["config"] != "{}" {
		t.Fatalf("writes %+v, want a PUT with config {}", w)
	}
}

// TestDeploySinkPasswords: a password the controller hides does not make
// the function look changed; --force updates it anyway.
func TestDeploySinkPasswords(t *testing.T) {
	app, url := newFakeApp(t)
	e := homeEnv(t)
	e["WISP_HOST"], e["WISP_TOKEN"] = url, "wisp_tok"
	dir := deployDir(t, "functions:\n  - name: f\n    wasm: hello.wasm\n    sinks: [{type: couchdb, params: {url: \"http://couch:5984/db\", username: u, password: secret}}]\n")
	mf := filepath.Join(dir, "wisp.yaml")
	if code, _, stderr := runCLI(t, e, "deploy", "-f", mf); code != 0 {
		t.Fatal(stderr)
	}
	if w := app.writes(); len(w) != 1 || !strings.Contains(w[0].fields["sinks"], `"password":"secret"`) {
		t.Fatalf("writes %+v", w)
	}
	app.reset()
	if code, stdout, _ := runCLI(t, e, "deploy", "-f", mf); code != 0 || !strings.Contains(stdout, "function _/f: unchanged") {
		t.Fatalf("exit %d, %q", code, stdout)
	}
	if code, stdout, _ := runCLI(t, e, "deploy", "-f", mf, "--force"); code != 0 || !strings.Contains(stdout, "function _/f: updated (forced)") {
		t.Fatalf("exit %d, %q", code, stdout)
	}
	if w := app.writes(); len(w) != 1 || w[0].method != "PUT" {
		t.Fatalf("writes %+v, want one forced PUT", w)
	}
}

// TestDeployJSON: -o json prints the plan as data.
func TestDeployJSON(t *testing.T) {
	_, url := newFakeApp(t)
	e := homeEnv(t)
	e["WISP_HOST"], e["WISP_TOKEN"] = url, "wisp_tok"
	dir := deployDir(t, "module: m\nfunctions: [{name: f, wasm: hello.wasm}]\n")
	code, stdout, stderr := runCLI(t, e, "deploy", "-f", filepath.Join(dir, "wisp.yaml"), "-o", "json", "--dry-run")
	if code != 0 {
		t.Fatal(stderr)
	}
	var r deployReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if !r.DryRun || r.Module != "m" || len(r.Items) != 2 || r.Items[0].Action != "create" || r.Items[1].Name != "f" || r.Items[1].Action != "create" {
		t.Fatalf("report %+v", r)
	}
}

// TestStarterManifest: fn new writes a manifest beside the project, adds
// later functions to it, and leaves a file that is not a manifest alone.
func TestStarterManifest(t *testing.T) {
	dir := t.TempDir()
	e := homeEnv(t)
	mf := filepath.Join(dir, "wisp.yaml")
	code, stdout, stderr := runCLI(t, e, "fn", "new", "a", "-l", "c", "-d", filepath.Join(dir, "a"))
	if code != 0 || !strings.Contains(stdout, "created deploy manifest "+mf) {
		t.Fatalf("exit %d, %q, %q", code, stdout, stderr)
	}
	os.WriteFile(mf, append(mustRead(t, mf), "# my own note\n"...), 0o644)
	code, stdout, _ = runCLI(t, e, "fn", "new", "b", "-l", "rust", "-d", filepath.Join(dir, "b"))
	if code != 0 || !strings.Contains(stdout, "extended deploy manifest "+mf) {
		t.Fatalf("exit %d, %q", code, stdout)
	}
	text := mustRead(t, mf)
	m, err := parseManifest(mf, dir, text)
	if err != nil {
		t.Fatalf("%v:\n%s", err, text)
	}
	if m.Module != "_" || len(m.Functions) != 2 || m.Functions[0].Source != filepath.Join(dir, "a") || m.Functions[1].Source != filepath.Join(dir, "b") {
		t.Fatalf("manifest %+v:\n%s", m, text)
	}
	if !strings.Contains(string(text), "# my own note") || !strings.Contains(string(text), "# timers:") {
		t.Errorf("comments lost:\n%s", text)
	}
	if code, stdout, _ := runCLI(t, e, "fn", "new", "c", "-l", "c", "-d", filepath.Join(dir, "c"), "--no-manifest"); code != 0 || strings.Contains(stdout, "manifest") {
		t.Errorf("--no-manifest: %d %q", code, stdout)
	}
	// A project file beside the new project is not a manifest: kept.
	other := t.TempDir()
	writeFile(t, other, "wisp.yaml", []byte("name: x\nlanguage: c\n"))
	code, stdout, _ = runCLI(t, e, "fn", "new", "d", "-l", "c", "-d", filepath.Join(other, "d"))
	if code != 0 || !strings.Contains(stdout, "left "+filepath.Join(other, "wisp.yaml")+" alone") {
		t.Errorf("exit %d, %q", code, stdout)
	}
	if string(mustRead(t, filepath.Join(other, "wisp.yaml"))) != "name: x\nlanguage: c\n" {
		t.Error("a project file was changed")
	}
}
