package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// writeCounter is a reverse proxy in front of a controller that counts the
// requests that are not GETs.
type writeCounter struct {
	writes atomic.Int64
	url    string
}

func newWriteCounter(t *testing.T, target string) *writeCounter {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			wc.writes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	wc.url = srv.URL
	return wc
}

// TestDeployAgainstController deploys an app from a manifest (a C source
// built by deploy and a prebuilt wasm) to a real controller, twice, with
// --dry-run, with --prune, and with bad manifests.
func TestDeployAgainstController(t *testing.T) {
	t.Parallel()
	toolchainPresent(t, "c")
	dataDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls", "off")
	addr := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	wc := newWriteCounter(t, addr)
	e := env{"XDG_CONFIG_HOME": t.TempDir(), "WISP_HOST": wc.url, "WISP_TOKEN": strings.TrimSpace(string(admin))}
	run := func(args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, e, args...)
		if code != 0 {
			t.Fatalf("wisp %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return stdout, stderr
	}
	has := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("output lacks %q:\n%s", w, out)
			}
		}
	}
	noWrites := func(what string, before int64) {
		t.Helper()
		if n := wc.writes.Load() - before; n != 0 {
			t.Fatalf("%s sent %d write requests, want none", what, n)
		}
	}

	// fn new writes the project and a starter manifest beside it, which
	// deploys as it is.
	work := t.TempDir()
	stdout, _ := run("fn", "new", "price", "-l", "c", "-d", filepath.Join(work, "price"))
	starter := filepath.Join(work, "wisp.yaml")
	has(stdout, "created deploy manifest "+starter, "next: wisp deploy -f "+starter)
	stdout, _ = run("deploy", "-f", starter)
	has(stdout, "module _: unchanged\n", "function _/price: created\n", "module _: 1 created\n")

	hello, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "hello_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, work, "hello.wasm", hello)
	app := `module: shop
functions:
  - name: price
    source: ./price
    events: [{type: mqtt, params: {topic: shop/price, local: true}}]
    metadata: {tag: edge, capacity: 1024}
  - name: hello
    wasm: ./hello.wasm
    sinks: [{type: couchdb, params: {url: "http://127.0.0.1:5984/wisp_deploy_test"}}]
`
	mf := writeFile(t, work, "app.yaml", []byte(app))
	stdout, _ = run("deploy", "-f", mf)
	has(stdout, "module shop: created\n", "function shop/price: created\n", "function shop/hello: created\n", "module shop: 2 created\n")
	var fi functionInfo
	out, _ := run("fn", "get", "price", "-m", "shop", "-o", "json")
	if err := json.Unmarshal([]byte(out), &fi); err != nil {
		t.Fatal(err)
	}
	if md, _ := normMetadata(fi.Metadata); md != `{"tag":"edge","capacity":1024}` || normEventsShown(fi.Events) != `[{"type":"mqtt","params":{"topic":"shop/price","local":true}}]` {
		t.Fatalf("price after deploy: %s", out)
	}

	// Twice: nothing is written.
	before := wc.writes.Load()
	stdout, _ = run("deploy", "-f", mf)
	has(stdout, "function shop/price: unchanged\n", "function shop/hello: unchanged\n", "module shop: 2 unchanged\n")
	noWrites("a second deploy", before)

	// A change: --dry-run shows the diff and changes nothing.
	changed := strings.Replace(app, "capacity: 1024", "capacity: 2048", 1)
	changed = strings.Replace(changed, "topic: shop/price,", "topic: shop/price2,", 1)
	writeFile(t, work, "app.yaml", []byte(changed))
	before = wc.writes.Load()
	stdout, _ = run("deploy", "-f", mf, "--dry-run")
	has(stdout, "function shop/price: would be updated (events, metadata)\n",
		`    metadata: {"tag":"edge","capacity":1024} -> {"tag":"edge","capacity":2048}`,
		`    events: [{"type":"mqtt","params":{"topic":"shop/price","local":true}}] -> [{"type":"mqtt","params":{"topic":"shop/price2","local":true}}]`,
		"function shop/hello: unchanged\n", "(dry run: nothing was changed)")
	noWrites("a dry run", before)
	out, _ = run("fn", "get", "price", "-m", "shop", "-o", "json")
	json.Unmarshal([]byte(out), &fi)
	if md, _ := normMetadata(fi.Metadata); md != `{"tag":"edge","capacity":1024}` {
		t.Fatalf("the dry run changed the function: %s", out)
	}
	stdout, _ = run("deploy", "-f", mf)
	has(stdout, "function shop/price: updated (events, metadata)\n", "module shop: 1 updated, 1 unchanged\n")
	before = wc.writes.Load()
	has(func() string { s, _ := run("deploy", "-f", mf); return s }(), "module shop: 2 unchanged\n")
	noWrites("a deploy after the update", before)

	// New code: the digest differs.
	writeFile(t, work, "hello.wasm", mustRead(t, filepath.Join("..", "..", "testdata", "wasm", "hello_wat.wasm")))
	stdout, _ = run("deploy", "-f", mf)
	has(stdout, "function shop/hello: updated (code)\n", "    code: sha256:")

	// A function the manifest does not list is kept, or pruned.
	run("fn", "upload", "extra", filepath.Join(work, "hello.wasm"), "-m", "shop")
	stdout, _ = run("deploy", "-f", mf)
	has(stdout, "function shop/extra: not in "+mf+", kept (--prune deletes it)\n", "2 unchanged, 1 kept (not in the manifest)")
	before = wc.writes.Load()
	stdout, _ = run("deploy", "-f", mf, "--prune", "--dry-run")
	has(stdout, "function shop/extra: not in "+mf+", would be deleted\n", "1 to delete")
	noWrites("a dry run with --prune", before)
	stdout, _ = run("deploy", "-f", mf, "--prune")
	has(stdout, "function shop/extra: not in "+mf+", deleted\n")
	if code, _, stderr := runCLI(t, e, "fn", "get", "extra", "-m", "shop"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("extra still there: %d %s", code, stderr)
	}

	// Bad manifests: a clear error naming the line, nothing sent.
	for _, bad := range []struct{ name, text, want string }{
		{"unknown key", strings.Replace(changed, "    wasm: ./hello.wasm", "    wasm: ./hello.wasm\n    memory: 64", 1), `bad.yaml:9: a function: unknown key "memory"`},
		{"missing name", strings.Replace(changed, "  - name: hello\n", "  - \n", 1), "bad.yaml:8: a function without a name"},
		{"source and wasm", strings.Replace(changed, "    wasm: ./hello.wasm", "    wasm: ./hello.wasm\n    source: ./price", 1), "bad.yaml:8: function hello: both source and wasm"},
		{"missing wasm file", strings.Replace(changed, "./hello.wasm", "./nope.wasm", 1), "bad.yaml:7: function hello: file " + filepath.Join(work, "nope.wasm") + " does not exist; nothing was changed"},
		{"bad event", strings.Replace(changed, "local: true", "local: maybe", 1), "bad.yaml:5:"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			p := writeFile(t, work, "bad.yaml", []byte(bad.text))
			before := wc.writes.Load()
			code, stdout, stderr := runCLI(t, e, "deploy", "-f", p)
			if code != ExitError || stdout != "" || !strings.Contains(stderr, bad.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want an error with %q", code, stdout, stderr, bad.want)
			}
			noWrites("a bad manifest", before)
		})
	}

	// Issue 14's settings: config, timers and secrets.
	t.Run("config", func(t *testing.T) {
		cfg := strings.Replace(changed, "    metadata: {tag: edge, capacity: 2048}", "    metadata: {tag: edge, capacity: 2048}\n    config: {env: {CURRENCY: EUR}, allow_hosts: [api.example.com]}", 1)
		p := writeFile(t, work, "config.yaml", []byte(cfg))
		code, stdout, stderr := runCLI(t, e, "deploy", "-f", p)
		if code != 0 || !strings.Contains(stdout, "function shop/price: updated (config)") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		before := wc.writes.Load()
		if _, stdout, _ := runCLI(t, e, "deploy", "-f", p); !strings.Contains(stdout, "module shop: 2 unchanged") {
			t.Fatalf("second deploy with config: %q", stdout)
		}
		noWrites("a second deploy with config", before)
		run("deploy", "-f", mf) // back to no config
	})
	t.Run("timers", func(t *testing.T) {
		tm := strings.Replace(changed, "    metadata: {tag: edge, capacity: 2048}", "    metadata: {tag: edge, capacity: 2048}\n    timers: [{every: 30s, local: true}, {cron: \"*/5 * * * *\"}]", 1)
		p := writeFile(t, work, "timers.yaml", []byte(tm))
		code, stdout, stderr := runCLI(t, e, "deploy", "-f", p)
		if code != 0 || !strings.Contains(stdout, "function shop/price: updated (events)") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		before := wc.writes.Load()
		if _, stdout, _ := runCLI(t, e, "deploy", "-f", p); !strings.Contains(stdout, "module shop: 2 unchanged") {
			t.Fatalf("second deploy with timers: %q", stdout)
		}
		noWrites("a second deploy with timers", before)
		run("deploy", "-f", mf)
	})
	t.Run("secrets", func(t *testing.T) {
		p := writeFile(t, work, "secrets.yaml", []byte(changed+"secrets: [API_KEY]\n"))
		before := wc.writes.Load()
		code, stdout, stderr := runCLI(t, e, "deploy", "-f", p)
		noWrites("a deploy refused for its secrets", before)
		if code != ExitError || stdout != "" || !strings.Contains(stderr, "module shop lacks the secret(s) API_KEY") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want the missing secret named", code, stdout, stderr)
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
