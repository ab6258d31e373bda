package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

func newExecutor(t *testing.T, dir string) (*Executor, *prometheus.Registry, func()) {
	t.Helper()
	return newExecutorWith(t, runtime.Config{CacheDir: dir})
}

func newExecutorWith(t *testing.T, cfg runtime.Config) (*Executor, *prometheus.Registry, func()) {
	t.Helper()
	dir := cfg.CacheDir
	rt, err := runtime.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			rt.Close(context.Background())
			if err := st.Check(); err != nil {
				t.Error(err)
			}
			st.Close()
		})
	}
	t.Cleanup(closeAll)
	reg := prometheus.NewRegistry()
	return New(rt, st, NewMetrics(reg, rt), nil), reg, closeAll
}

func TestInvokeFetchesStoresAndSurvivesRestart(t *testing.T) {
	code, err := os.ReadFile("../../testdata/wasm/hello_c.wasm")
	if err != nil {
		t.Fatal(err)
	}
	digest := runtime.Digest(code)
	dir := t.TempDir()
	fetches := 0
	fetch := func(_ context.Context, d string) ([]byte, error) {
		fetches++
		if d != digest {
			return nil, errors.New("unknown digest")
		}
		return code, nil
	}
	call := Call{ActivationID: "a1", Module: "_", Function: "hello", Digest: digest, Args: []byte(`{"name":"Ada"}`)}

	func() {
		e, reg, closeAll := newExecutor(t, dir)
		out := e.Invoke(context.Background(), call, fetch)
		if out.Err != nil || string(out.Output) != `{"payload":"Hello Ada!"}` {
			t.Fatalf("%s %v", out.Output, out.Err)
		}
		if !out.Compiled || out.DiskCacheHit || out.Transfer == 0 {
			t.Errorf("first call: compiled=%v disk=%v transfer=%v", out.Compiled, out.DiskCacheHit, out.Transfer)
		}
		out = e.Invoke(context.Background(), call, fetch)
		if out.Err != nil || out.Compiled {
			t.Fatalf("warm call: %v compiled=%v", out.Err, out.Compiled)
		}
		if got := testutil.ToFloat64(e.metrics.invocations.WithLabelValues("ok")); got != 2 {
			t.Errorf("ok invocations metric %v", got)
		}
		if n, _ := testutil.GatherAndCount(reg, "wisp_agent_runtime_compiles_total"); n != 1 {
			t.Errorf("runtime collector missing")
		}
		closeAll()
	}()

	// Restart: code comes from the state file, compiled code from disk.
	e, _, _ := newExecutor(t, dir)
	out := e.Invoke(context.Background(), call, nil)
	if out.Err != nil || !out.DiskCacheHit || fetches != 1 {
		t.Fatalf("after restart: err=%v disk=%v fetches=%d", out.Err, out.DiskCacheHit, fetches)
	}
	if got := testutil.ToFloat64(e.metrics.loads.WithLabelValues("disk")); got != 1 {
		t.Errorf("disk load metric %v", got)
	}
}

func TestInvokeWithoutCode(t *testing.T) {
	e, _, _ := newExecutor(t, t.TempDir())
	out := e.Invoke(context.Background(), Call{Digest: "sha256:abc"}, nil)
	if !errors.Is(out.Err, ErrNoCode) {
		t.Fatalf("%v", out.Err)
	}
	out = e.Invoke(context.Background(), Call{Digest: "sha256:abc"}, func(context.Context, string) ([]byte, error) {
		return []byte("\x00asm\x01\x00\x00\x00"), nil
	})
	if !errors.Is(out.Err, ErrNoCode) || !strings.Contains(out.Err.Error(), "hash to") {
		t.Fatalf("wrong bytes accepted: %v", out.Err)
	}
	if e.InFlight() != 0 || e.Total() != 2 {
		t.Fatalf("inflight %d total %d", e.InFlight(), e.Total())
	}
}

func TestStoreAndDrop(t *testing.T) {
	e, _, _ := newExecutor(t, t.TempDir())
	code, _ := os.ReadFile("../../testdata/wasm/hello_wat.wasm")
	d := runtime.Digest(code)
	if err := e.Store(context.Background(), d, code); err != nil {
		t.Fatal(err)
	}
	// The module cache has room: the pushed code is compiled and kept.
	if !e.rt.Loaded(d) || e.rt.Stats().Compiles != 1 || len(e.Digests()) != 1 {
		t.Fatal("pushed code not compiled or not stored")
	}
	if err := e.Drop(d); err != nil {
		t.Fatal(err)
	}
	if e.rt.Loaded(d) || len(e.Digests()) != 0 {
		t.Fatal("dropped code still there")
	}
}

// TestStoreWithoutRoom: pushed code that does not fit in the module cache
// beside what is there is compiled into the disk cache only; the first
// call loads it from there.
func TestStoreWithoutRoom(t *testing.T) {
	e, _, _ := newExecutorWith(t, runtime.Config{CacheDir: t.TempDir(), MaxCompiledBytes: 16 << 10})
	if e.rt.Engine() != runtime.EngineCompiler {
		t.Skip("no disk cache with the interpreter")
	}
	code, _ := os.ReadFile("../../testdata/wasm/hello_wat.wasm")
	d := runtime.Digest(code)
	if err := e.Store(context.Background(), d, code); err != nil {
		t.Fatal(err)
	}
	if e.rt.Loaded(d) || e.rt.Stats().Compiles != 1 {
		t.Fatalf("pushed code not compiled (%d compiles) or kept in memory without room (%v)", e.rt.Stats().Compiles, e.rt.Loaded(d))
	}
	call := Call{ActivationID: "a1", Module: "_", Function: "hello", Digest: d, Args: []byte(`{}`)}
	if out := e.Invoke(context.Background(), call, nil); out.Err != nil || !out.Compiled || !out.DiskCacheHit {
		t.Fatalf("first call after the push: %v, compiled %v, from disk %v", out.Err, out.Compiled, out.DiskCacheHit)
	}
}

// TestQuarantinedCodeNeverRuns: a quarantined digest is neither fetched,
// compiled nor run, on Invoke as on a push; the error is typed and maps to
// the Quarantined wire code; once released it runs.
func TestQuarantinedCodeNeverRuns(t *testing.T) {
	code, err := os.ReadFile("../../testdata/wasm/hello_c.wasm")
	if err != nil {
		t.Fatal(err)
	}
	digest := runtime.Digest(code)
	e, _, _ := newExecutor(t, t.TempDir())
	if _, err := e.st.SetQuarantine([]protocol.QuarantineEntry{{Digest: digest, Reason: "the agent died while running this code", SinceUnixMS: 1}}); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	fetch := func(context.Context, string) ([]byte, error) { fetches++; return code, nil }
	call := Call{ActivationID: "a1", Module: "_", Function: "hello", Digest: digest, Args: []byte(`{}`)}
	out := e.Invoke(context.Background(), call, fetch)
	var qerr *state.QuarantineError
	if !errors.As(out.Err, &qerr) || !errors.Is(out.Err, state.ErrQuarantined) || WireCode(out.Err) != protocol.Quarantined {
		t.Fatalf("Invoke of quarantined code: %v (wire code %v)", out.Err, WireCode(out.Err))
	}
	if !strings.Contains(out.Err.Error(), "died while running") {
		t.Fatalf("the error does not say why: %v", out.Err)
	}
	if err := e.Store(context.Background(), digest, code); err != nil {
		t.Fatalf("Store of quarantined code: %v", err)
	}
	if fetches != 0 || e.rt.Loaded(digest) || e.rt.Stats().Compiles != 0 {
		t.Fatalf("quarantined code was fetched %d times or compiled (%d compiles)", fetches, e.rt.Stats().Compiles)
	}
	if !e.st.HasCode(digest) {
		t.Fatal("a push of quarantined code was not kept")
	}
	if _, err := e.st.SetQuarantine(nil); err != nil {
		t.Fatal(err)
	}
	if out := e.Invoke(context.Background(), call, fetch); out.Err != nil || string(out.Output) != `{"payload":"Hello World!"}` {
		t.Fatalf("after the release: %s %v", out.Output, out.Err)
	}
}

// TestFunctionsShareSlotsByName: the executor keys a call's share of the
// instance slots by module/function, so two functions with the same code
// have a cap and a queue each, while calls of one function share them; a
// refusal is Overloaded on the wire and shows in the queue metrics.
func TestFunctionsShareSlotsByName(t *testing.T) {
	e, reg, _ := newExecutorWith(t, runtime.Config{CacheDir: t.TempDir(), MaxConcurrent: 4, MaxPerFunction: 1, MaxQueuedPerFunction: 1})
	code, err := os.ReadFile("../../testdata/wasm/loop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	d := runtime.Digest(code)
	if err := e.Store(context.Background(), d, code); err != nil {
		t.Fatal(err)
	}
	spin := Call{Module: "m", Function: "spin", Digest: d, Limits: runtime.Limits{Timeout: time.Minute}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 { // one runs, one waits
		wg.Add(1)
		go func() { defer wg.Done(); e.Invoke(ctx, spin, nil) }()
	}
	defer func() { cancel(); wg.Wait() }()
	testwait.For(t, 30*time.Second, "one running and one queued call", func() bool {
		s := e.Runtime().Stats()
		return s.Busy == 1 && s.Waiting == 1
	})

	out := e.Invoke(context.Background(), spin, nil)
	if !errors.Is(out.Err, runtime.ErrOverloaded) || WireCode(out.Err) != protocol.Overloaded {
		t.Fatalf("a third call of a function with a full queue: %v (wire %v)", out.Err, WireCode(out.Err))
	}
	// Same code, another function: its own share, so it runs at once.
	other := Call{Module: "m", Function: "spin2", Digest: d, Limits: runtime.Limits{Timeout: 100 * time.Millisecond}}
	out = e.Invoke(context.Background(), other, nil)
	if !errors.Is(out.Err, runtime.ErrTimeout) || out.Queue != 0 || out.Run == 0 {
		t.Fatalf("another function with the same code: %v, queued %v, ran %v", out.Err, out.Queue, out.Run)
	}
	for name, want := range map[string]float64{
		`wisp_agent_queue_refusals_total{reason="queue_full"}`:  1,
		`wisp_agent_queue_waits_total{reason="function_limit"}`: 1,
		`wisp_agent_queue_waits_total{reason="agent_full"}`:     0,
		`wisp_agent_queued`:                                 1,
		`wisp_agent_slots_busy`:                             1,
		`wisp_agent_invocations_total{result="overloaded"}`: 1,
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// gathered returns the value of one series, written name{label="value"}.
func gathered(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}
