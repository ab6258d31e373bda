package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", name+".wasm"))
	if err != nil {
		t.Fatalf("fixture %s: %v (run make fixtures)", name, err)
	}
	return b
}

// sharedCacheDir lets the tests' runtimes share one disk compilation cache,
// so the 3 MiB Go guest is compiled once per test binary, not once per test.
var sharedCacheDir string

func TestMain(m *testing.M) {
	RunCompileWorkerIfAsked() // workerBudget names this test binary
	dir, err := os.MkdirTemp("", "wisp-runtime-test-")
	if err != nil {
		panic(err)
	}
	sharedCacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newRuntime(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = sharedCacheDir
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func load(t testing.TB, r *Runtime, name string) string {
	t.Helper()
	info, err := r.Load(context.Background(), fixture(t, name))
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return info.Digest
}

func TestHello(t *testing.T) {
	r := newRuntime(t, Config{})
	tests := []struct {
		fixture, input, want string
		abi                  ABI
	}{
		{"hello_c", `{"name":"Ada"}`, `{"payload":"Hello Ada!"}`, ABIFunLess},
		{"hello_c", `{}`, `{"payload":"Hello World!"}`, ABIFunLess},
		{"hello_c", ``, `{"payload":"Hello World!"}`, ABIFunLess},
		{"hello_go", `{"name":"Ada"}`, `{"payload":"Hello Ada!"}`, ABIFunLess},
		{"hello_rust", `{"name":"Ada"}`, `{"payload":"Hello Ada!"}`, ABIWASICommand},
		{"hello_wat", `{"name":"Ada"}`, `{"payload":"Hello Ada!"}`, ABIFunLess},
		{"echo_c", `{"a":[1,2,{"b":null}]}`, `{"a":[1,2,{"b":null}]}`, ABIWASICommand},
		{"echo_rust", `{"x":"ü"}`, `{"x":"ü"}`, ABIWASICommand},
	}
	for _, tt := range tests {
		t.Run(tt.fixture+"/"+tt.input, func(t *testing.T) {
			d := load(t, r, tt.fixture)
			res, err := r.Invoke(context.Background(), d, Request{Input: []byte(tt.input)})
			if err != nil {
				t.Fatalf("Invoke: %v (logs %q)", err, texts(res.Logs))
			}
			if got := string(res.Output); got != tt.want {
				t.Errorf("output %s, want %s", got, tt.want)
			}
			if res.ABI != tt.abi {
				t.Errorf("ABI %s, want %s", res.ABI, tt.abi)
			}
		})
	}
}

func TestGoGuestLogs(t *testing.T) {
	r := newRuntime(t, Config{})
	res, err := r.Invoke(context.Background(), load(t, r, "hello_go"), Request{Input: []byte(`{"name":"Go"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Logs) == 0 || res.Logs[0].Text != "hello from go" || res.Logs[0].Stream != protocol.StreamConsole {
		t.Errorf("logs %+v, want [hello from go] on the console stream", res.Logs)
	}
}

func TestConsoleLog(t *testing.T) {
	r := newRuntime(t, Config{Limits: Limits{LogLines: 10, LogBytes: 500}})
	res, err := r.Invoke(context.Background(), load(t, r, "log"), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(texts(res.Logs), "|") != "first line|second line" || string(res.Output) != `{"logged":2}` {
		t.Errorf("logs %q output %s", texts(res.Logs), res.Output)
	}

	res, err = r.Invoke(context.Background(), load(t, r, "logflood"), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Logs) != 5+1 { // 500 bytes / 100-byte lines, and the marker
		t.Errorf("kept %d lines, want 5 (bounded by LogBytes) and the marker", len(res.Logs))
	}
	if res.LogsDropped != 100000-5 || res.LogBytesDropped != (100000-5)*100 {
		t.Errorf("dropped %d lines, %d bytes; want %d, %d", res.LogsDropped, res.LogBytesDropped, 100000-5, (100000-5)*100)
	}
	if last := res.Logs[len(res.Logs)-1]; last.Stream != protocol.StreamPlatform ||
		last.Text != TruncatedMarker(100000-5, (100000-5)*100, 10, 500) {
		t.Errorf("last line %+v, want the marker", last)
	}
}

// TestFailures drives every failure kind from a fixture, then checks the
// runtime still serves a good invocation.
func TestFailures(t *testing.T) {
	// Only the deadline cases get a short timeout: anything else must not
	// fail because a loaded machine is slow.
	r := newRuntime(t, Config{Limits: Limits{Timeout: time.Minute, MemoryBytes: 8 << 20}})
	short := Limits{Timeout: 300 * time.Millisecond}
	hello := load(t, r, "hello_c")
	ctx := context.Background()

	loadTests := []struct {
		name    string
		code    []byte
		want    *Error
		message string
	}{
		{"not wasm", fixture(t, "notwasm"), ErrNotWasm, "magic"},
		{"empty", nil, ErrNotWasm, "magic"},
		{"truncated", fixture(t, "invalid"), ErrInvalidModule, ""},
		{"unknown fl_imps import", fixture(t, "unknown_import"), ErrUnknownImport, "fl_imps.__launch_missiles"},
		{"unknown module import", fixture(t, "unknown_module"), ErrUnknownImport, "env.host_secret"},
		{"no entry point", fixture(t, "noexport"), ErrMissingExport, "__invoke"},
	}
	for _, tt := range loadTests {
		t.Run("load/"+tt.name, func(t *testing.T) {
			_, err := r.Load(ctx, tt.code)
			checkErr(t, err, tt.want, tt.message)
			_, ierr := Inspect(ctx, tt.code)
			checkErr(t, ierr, tt.want, tt.message)
			checkHello(t, r, hello)
		})
	}

	invokeTests := []struct {
		name    string
		fixture string
		req     Request
		want    *Error
		message string
	}{
		{"infinite loop", "loop", Request{Limits: short}, ErrTimeout, "stopped after 300ms"},
		{"wasi infinite loop", "wasi_loop", Request{Limits: short}, ErrTimeout, "stopped after"},
		{"endless recursion without a loop", "recurse", Request{Limits: short}, ErrTimeout, "stopped after 300ms"},
		{"memory bomb", "membomb", Request{}, ErrMemoryLimit, "8 MiB"},
		{"start memory over cap", "mem1m", Request{Limits: Limits{MemoryBytes: 512 << 10}}, ErrMemoryLimit, "at start"},
		{"trap", "trap", Request{}, ErrTrap, "integer divide by zero"},
		{"non-JSON output", "nonjson", Request{}, ErrOutputNotJSON, "not json at all"},
		{"guest error", "guest_error", Request{}, ErrGuestError, "something went wrong"},
		{"non-zero exit", "exit_c", Request{}, ErrExit, "exit code 3: boom: bad input"},
		{"output too big (funless)", "hello_c", Request{Input: []byte(`{"name":"` + strings.Repeat("x", 100) + `"}`), Limits: Limits{OutputBytes: 50}}, ErrOutputTooLarge, "50 bytes"},
		{"output too big (wasi)", "echo_c", Request{Input: []byte(`"` + strings.Repeat("x", 2000) + `"`), Limits: Limits{OutputBytes: 1000}}, ErrOutputTooLarge, "1000 bytes"},
		{"input too big", "hello_c", Request{Input: []byte(`"` + strings.Repeat("x", 2000) + `"`), Limits: Limits{InputBytes: 1000}}, ErrInputTooLarge, "1000 bytes"},
		{"input not JSON", "hello_c", Request{Input: []byte(`{"name":`)}, ErrInvalidInput, "JSON"},
		{"bad response pointer", "badptr_response", Request{}, ErrTrap, "outside linear memory"},
		{"bad http pointers", "http_badptr", Request{Input: []byte(`{"u":"http://127.0.0.1:1/"}`)}, ErrTrap, "outside linear memory"},
	}
	for _, tt := range invokeTests {
		t.Run("invoke/"+tt.name, func(t *testing.T) {
			d := load(t, r, tt.fixture)
			_, err := r.Invoke(ctx, d, tt.req)
			checkErr(t, err, tt.want, tt.message)
			checkHello(t, r, hello)
		})
	}

	t.Run("not loaded", func(t *testing.T) {
		_, err := r.Invoke(ctx, "sha256:00", Request{})
		checkErr(t, err, ErrNotLoaded, "sha256:00")
	})
	t.Run("exit details", func(t *testing.T) {
		_, err := r.Invoke(ctx, load(t, r, "exit_c"), Request{})
		var e *Error
		if !errors.As(err, &e) || e.ExitCode != 3 || !strings.Contains(e.Stderr, "boom") {
			t.Fatalf("got %#v", err)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := r.Invoke(cctx, load(t, r, "loop"), Request{Limits: Limits{Timeout: time.Minute}})
		checkErr(t, err, ErrCanceled, "canceled")
	})
}

func checkErr(t *testing.T, err error, want *Error, msg string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v (%T), want kind %s", err, err, want.Kind)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not contain %q", err, msg)
	}
}

func checkHello(t *testing.T, r *Runtime, digest string) {
	t.Helper()
	res, err := r.Invoke(context.Background(), digest, Request{Input: []byte(`{"name":"Ada"}`)})
	if err != nil || string(res.Output) != `{"payload":"Hello Ada!"}` {
		t.Fatalf("runtime no longer serves hello: %s %v", res.Output, err)
	}
}

func TestHTTPRequest(t *testing.T) {
	var gotHeader, gotBody, gotMethod string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		gotMethod = req.Method
		gotHeader = req.Header.Get("X-Wisp")
		b, _ := io.ReadAll(req.Body)
		gotBody = string(b)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"hello":"from server"}`)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	input := []byte(`{"u":"` + srv.URL + `/x"}`)

	r := newRuntime(t, Config{})
	get, post := load(t, r, "http"), load(t, r, "http_post")
	ctx := context.Background()

	t.Run("allowed GET", func(t *testing.T) {
		res, err := r.Invoke(ctx, get, Request{Input: input, AllowedHosts: []string{host}})
		if err != nil || string(res.Output) != `{"hello":"from server"}` {
			t.Fatalf("%s %v %q", res.Output, err, texts(res.Logs))
		}
		if gotMethod != "GET" {
			t.Errorf("method %s", gotMethod)
		}
	})
	t.Run("allowed POST with headers and body", func(t *testing.T) {
		res, err := r.Invoke(ctx, post, Request{Input: input, AllowedHosts: []string{"127.0.0.1"}})
		if err != nil || string(res.Output) != `{"hello":"from server"}` {
			t.Fatalf("%s %v %q", res.Output, err, texts(res.Logs))
		}
		if gotMethod != "POST" || gotHeader != "a:b" || gotBody != `{"ping":true}` {
			t.Errorf("server saw %s %q %q", gotMethod, gotHeader, gotBody)
		}
	})
	t.Run("empty allowlist refuses", func(t *testing.T) {
		gotMethod = ""
		res, err := r.Invoke(ctx, get, Request{Input: input})
		checkErr(t, err, ErrGuestError, "transport failure")
		if gotMethod != "" {
			t.Error("the request reached the server")
		}
		if len(res.Logs) == 0 || !strings.Contains(res.Logs[0].Text, "allowlist") || res.Logs[0].Stream != protocol.StreamPlatform {
			t.Errorf("logs %q should say why", texts(res.Logs))
		}
	})
	t.Run("other host refused", func(t *testing.T) {
		_, err := r.Invoke(ctx, get, Request{Input: input, AllowedHosts: []string{"example.com"}})
		checkErr(t, err, ErrGuestError, "transport failure")
	})
	t.Run("response truncated to limit", func(t *testing.T) {
		res, err := r.Invoke(ctx, get, Request{Input: input, AllowedHosts: []string{"*"}, Limits: Limits{HTTPResponseBytes: 8}})
		checkErr(t, err, ErrOutputNotJSON, `{\"hello`)
		if !strings.Contains(strings.Join(texts(res.Logs), "\n"), "truncated to 8 bytes") {
			t.Errorf("logs %q", texts(res.Logs))
		}
	})
}

func TestParallelInvocations(t *testing.T) {
	// Correctness under concurrency, not speed: a loaded CI machine under
	// -race can take seconds per Go guest instance, and queued calls wait.
	// The Go guest alone is estimated over the default MaxCompiledBytes:
	// room for all four, so none is evicted between its Load and calls.
	r := newRuntime(t, Config{Limits: Limits{Timeout: 5 * time.Minute}, MaxCompiledBytes: 64 << 20})
	digests := map[string]string{
		"hello_c": load(t, r, "hello_c"), "hello_go": load(t, r, "hello_go"),
		"hello_rust": load(t, r, "hello_rust"), "trap": load(t, r, "trap"),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names := []string{"hello_c", "hello_go", "hello_rust", "trap"}
			name := names[i%len(names)]
			res, err := r.Invoke(context.Background(), digests[name], Request{Input: []byte(`{"name":"P"}`)})
			switch {
			case name == "trap" && !errors.Is(err, ErrTrap):
				errs <- err
			case name != "trap" && (err != nil || string(res.Output) != `{"payload":"Hello P!"}`):
				errs <- errors.New(name + ": " + string(res.Output) + " " + errString(err))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestLoadOnceAndEvict(t *testing.T) {
	r := newRuntime(t, Config{MaxModules: 2})
	code := fixture(t, "hello_c")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); r.Load(context.Background(), code) }()
	}
	wg.Wait()
	if s := r.Stats(); s.Compiles != 1 {
		t.Fatalf("8 concurrent loads compiled %d times, want 1", s.Compiles)
	}
	d := Digest(code)
	load(t, r, "hello_wat")
	load(t, r, "log") // evicts hello_c (LRU bound 2)
	if r.Loaded(d) {
		t.Fatal("hello_c still loaded after two newer modules")
	}
	if _, err := r.Invoke(context.Background(), d, Request{}); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("invoke evicted: %v", err)
	}
	if s := r.Stats(); s.Modules != 2 || s.Evictions != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDiskCacheSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	code := fixture(t, "hello_c")
	r1 := newRuntime(t, Config{CacheDir: dir})
	if r1.Engine() != EngineCompiler {
		t.Skipf("engine %s has no disk compilation cache", r1.Engine())
	}
	if _, err := r1.Load(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	if s := r1.Stats(); s.DiskCacheHits != 0 {
		t.Fatalf("first load counted a disk hit: %+v", s)
	}
	r1.Close(context.Background())

	r2 := newRuntime(t, Config{CacheDir: dir})
	if _, err := r2.Load(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	if s := r2.Stats(); s.DiskCacheHits != 1 {
		t.Fatalf("reload after restart: %+v, want one disk cache hit", s)
	}
	checkHello(t, r2, Digest(code))
}

func TestSpareInstances(t *testing.T) {
	r := newRuntime(t, Config{SpareThreshold: time.Nanosecond, SpareInstances: 2})
	d := load(t, r, "hello_go")
	ctx := context.Background()
	if _, err := r.Invoke(ctx, d, Request{Input: []byte(`{"name":"a"}`)}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "two spare instances", func() bool { return r.Stats().Spares == 2 })
	res, err := r.Invoke(ctx, d, Request{Input: []byte(`{"name":"b"}`)})
	if err != nil || string(res.Output) != `{"payload":"Hello b!"}` || !res.Spare {
		t.Fatalf("spare call: %s %v spare=%v", res.Output, err, res.Spare)
	}
	if len(res.Logs) != 1 || res.Logs[0].Text != "hello from go" {
		t.Errorf("spare instance lost the call's logs: %q", texts(res.Logs))
	}
	// A spare is fresh: state from one call never leaks into the next.
	res2, err := r.Invoke(ctx, d, Request{Input: []byte(`{"name":"c"}`)})
	if err != nil || string(res2.Output) != `{"payload":"Hello c!"}` {
		t.Fatalf("%s %v", res2.Output, err)
	}
	r.Evict(d)
	testwait.For(t, 10*time.Second, "no spare instances", func() bool { return r.Stats().Spares == 0 })
}

// TestMemoryBombDoesNotGrowHost runs many capped memory bombs and checks the
// host's heap comes back: guest memory is released with its instance.
func TestMemoryBombDoesNotGrowHost(t *testing.T) {
	r := newRuntime(t, Config{Limits: Limits{MemoryBytes: 32 << 20}})
	d := load(t, r, "membomb")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 40 { // 40 × 32 MiB = 1.25 GiB of guest memory in total
		if _, err := r.Invoke(context.Background(), d, Request{}); !errors.Is(err, ErrMemoryLimit) {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	if grown > 64<<20 {
		t.Fatalf("heap grew %d MiB after 40 capped bombs", grown>>20)
	}
}

func TestInspect(t *testing.T) {
	info, err := Inspect(context.Background(), fixture(t, "hello_go"))
	if err != nil {
		t.Fatal(err)
	}
	if info.ABI != ABIFunLess || !info.Initialize || !strings.HasPrefix(info.Digest, "sha256:") {
		t.Fatalf("%+v", info)
	}
	b, _ := json.Marshal(info)
	if !strings.Contains(string(b), "fl_imps.__get_input_data") {
		t.Errorf("imports not listed: %s", b)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Engine: "jit"},
		{Limits: Limits{MemoryBytes: 100}},
		{Limits: Limits{Timeout: -1}},
		{MaxModules: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: want an error", c)
		}
		if _, err := New(context.Background(), c); err == nil {
			t.Errorf("New(%+v): want an error", c)
		}
	}
}
