package runtime

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/internal/testing/testwasm"
)

// workerBudget makes this test binary the compile worker (TestMain calls
// RunCompileWorkerIfAsked). Under the race detector the worker would be
// the race-instrumented binary, whose shadow memory and slowdown make
// memory and time budgets meaningless: the TestWorker tests run in the
// Makefile's non-race line instead.
func workerBudget(t testing.TB, timeout time.Duration, memory uint64) CompileBudget {
	t.Helper()
	if raceEnabled {
		t.Skip("the race-instrumented test binary makes a meaningless compile worker; run without -race")
	}
	w := SelfWorker()
	if w == nil {
		t.Skip("cannot find the test executable")
	}
	return CompileBudget{Worker: w, Timeout: timeout, MemoryBytes: memory}
}

func hostile(t testing.TB, name string) []byte {
	t.Helper()
	for _, h := range testwasm.HostileModules() {
		if h.Name == name {
			return h.Code
		}
	}
	t.Fatalf("no hostile module %s", name)
	return nil
}

// TestWorkerBudgetMemory: a module within every static limit whose
// optimising compile takes 2.3 GB is stopped by the worker's memory
// budget; this process and its other modules are untouched, and the
// verdict is remembered, so the digest is not compiled again.
func TestWorkerBudgetMemory(t *testing.T) {
	r := newRuntime(t, Config{CacheDir: t.TempDir(), Engine: EngineCompiler, Compile: workerBudget(t, time.Minute, 256<<20)})
	code := hostile(t, "compile_br_tables")
	start := time.Now()
	_, err := r.Load(context.Background(), code)
	if !errors.Is(err, ErrCompileBudget) || !strings.Contains(err.Error(), "256 MiB") {
		t.Fatalf("Load: %v, want a compile budget error naming the memory budget", err)
	}
	t.Logf("refused after %v: %v", time.Since(start), err)
	start = time.Now()
	if _, err2 := r.Load(context.Background(), code); !errors.Is(err2, ErrCompileBudget) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second Load: %v after %v, want the remembered verdict at once", err2, time.Since(start))
	}
	if r.Loaded(Digest(code)) {
		t.Fatal("the refused module is loaded")
	}
	d := load(t, r, "hello_c")
	if res, err := r.Invoke(context.Background(), d, Request{Input: []byte(`{"name":"Ada"}`)}); err != nil || string(res.Output) != `{"payload":"Hello Ada!"}` {
		t.Fatalf("hello after the refusal: %s %v", res.Output, err)
	}
}

// TestWorkerBudgetTime: a module whose compile runs for minutes is
// stopped at the time budget, counted in CPU time on Linux.
func TestWorkerBudgetTime(t *testing.T) {
	budget := workerBudget(t, time.Second, 0)
	// The worker runs at a lower priority: on a busy machine its 1-2 s of
	// CPU take far longer than 10 s of wall time, which is not what this
	// test is about (TestWorkerStarvedIsNotRemembered is).
	budget.Wall = 5 * time.Minute
	r := newRuntime(t, Config{CacheDir: t.TempDir(), Engine: EngineCompiler, Compile: budget})
	start := time.Now()
	_, err := r.Load(context.Background(), hostile(t, "compile_locals"))
	took := time.Since(start)
	want := "longer than the budget of 1s"
	if cpuLimited {
		want += " of CPU time"
	}
	if !errors.Is(err, ErrCompileBudget) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load: %v, want the time budget (%q)", err, want)
	}
	if took > budget.Wall {
		t.Fatalf("refused only after %v", took)
	}
	t.Logf("refused after %v of wall time", took)
}

// TestWorkerStarvedIsNotRemembered: a worker that gets almost no CPU
// (here a stand-in that sleeps) is stopped after ten times the budget of
// wall time with KindOverloaded, and the verdict is not remembered: how
// busy the machine is says nothing about the module.
func TestWorkerStarvedIsNotRemembered(t *testing.T) {
	if !cpuLimited {
		t.Skip("the time budget is wall time here")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	budget := CompileBudget{Worker: []string{sleep, "30"}, Timeout: 100 * time.Millisecond}
	r := newRuntime(t, Config{CacheDir: t.TempDir(), Engine: EngineCompiler, Compile: budget})
	code := hostile(t, "compile_locals")
	start := time.Now()
	_, err = r.Load(context.Background(), code)
	took := time.Since(start)
	if !errors.Is(err, ErrOverloaded) || !strings.Contains(err.Error(), "too busy") {
		t.Fatalf("Load: %v, want KindOverloaded saying the machine is too busy", err)
	}
	if took < time.Second || took > 10*time.Second {
		t.Fatalf("stopped after %v, want ten times the 100ms budget", took)
	}
	if _, ok := r.compiler.failed.Get(Digest(code)); ok {
		t.Fatal("a starved compile was remembered as the module's verdict")
	}
}

// TestWorkerEvictCancels: evicting a digest (its function was deleted)
// stops its compile at once; callers learn it was canceled, and the
// verdict is not remembered (a later Load may compile it).
func TestWorkerEvictCancels(t *testing.T) {
	r := newRuntime(t, Config{CacheDir: t.TempDir(), Engine: EngineCompiler, Compile: workerBudget(t, 5*time.Minute, 0)})
	code := hostile(t, "compile_locals")
	done := make(chan error, 1)
	go func() { _, err := r.Load(context.Background(), code); done <- err }()
	// The compile is in its worker (not still checking or queued), so the
	// eviction has a worker to stop.
	testwait.For(t, 30*time.Second, "the compile to take a worker", func() bool { return len(r.compiler.workers) == 1 })
	start := time.Now()
	r.Evict(Digest(code))
	select {
	case err := <-done:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("Load: %v, want ErrCanceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Load still running 5s after its digest was evicted")
	}
	t.Logf("canceled %v after the eviction", time.Since(start))
	if _, ok := r.compiler.failed.Get(Digest(code)); ok {
		t.Fatal("a cancellation was remembered as a verdict")
	}
}

// TestWorkerCallerCancelDoesNotStop: a caller giving up does not stop a
// compile another Load (or the next invocation) will want.
func TestWorkerCallerCancelDoesNotStop(t *testing.T) {
	r := newRuntime(t, Config{CacheDir: t.TempDir(), Compile: workerBudget(t, time.Minute, 0)})
	code := fixture(t, "hello_go") // 2 MB of code: compiled in a worker
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Load(ctx, code); !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCanceled) {
		t.Fatalf("Load with a 50ms deadline: %v", err)
	}
	info, err := r.Load(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	if info.ABI != ABIFunLess || !info.Initialize {
		t.Fatalf("info %+v", info)
	}
	if s := r.Stats(); s.Compiles != 1 {
		t.Fatalf("compiled %d times, want once", s.Compiles)
	}
}

// TestWorkerCompile: a module that is not cheap to compile goes through
// a worker; with the compiler engine its code reaches this process through
// the disk cache, and runs.
func TestWorkerCompile(t *testing.T) {
	for _, tc := range []struct {
		engine, want string
		code         func(*testing.T) []byte
	}{
		{EngineCompiler, `{"payload":"Hello Ada!"}`, func(t *testing.T) []byte { return fixture(t, "hello_go") }},
		// The interpreter compiles up to 3 MiB of code in process: the
		// 16 MiB Go guest is what takes a worker.
		{EngineInterpreter, `{"funcs":`, bigGoGuest},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			dir := t.TempDir()
			r := newRuntime(t, Config{CacheDir: dir, Engine: tc.engine, Compile: workerBudget(t, time.Minute, 0)})
			code := tc.code(t)
			p, _ := Scan(code, ModuleLimits{})
			if cheap(p, tc.engine) {
				t.Fatal("the module is cheap: the test would not use a worker")
			}
			start := time.Now()
			info, err := r.Load(context.Background(), code)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: loaded through a worker in %v", tc.engine, time.Since(start))
			res, err := r.Invoke(context.Background(), info.Digest, Request{Input: []byte(`{"name":"Ada"}`)})
			if err != nil || !strings.HasPrefix(string(res.Output), tc.want) {
				t.Fatalf("invoke: %s %v", res.Output, err)
			}
			if tc.engine != EngineCompiler {
				return
			}
			// The worker wrote the compiled code; a restarted runtime loads it.
			entries, _ := os.ReadDir(dir + "/wazero")
			if len(entries) == 0 {
				t.Fatal("no compiled code in the disk cache")
			}
			r.Close(context.Background())
			r2 := newRuntime(t, Config{CacheDir: dir, Engine: tc.engine, Compile: workerBudget(t, time.Minute, 0)})
			if info, err := r2.Load(context.Background(), code); err != nil || !info.DiskCacheHit {
				t.Fatalf("after a restart: %+v %v, want a disk cache hit", info, err)
			}
		})
	}
}

// TestWorkerInspector: the controller's validation (interpreter) of 15 MiB
// of straight-line code needs 680 MB in process; in a worker with a 256 MiB
// budget it is refused, and the budget is said; a 16 MiB Go guest passes.
func TestWorkerInspector(t *testing.T) {
	in := NewInspector(InspectConfig{Compile: workerBudget(t, time.Minute, 256<<20)})
	_, err := in.Inspect(context.Background(), hostile(t, "validate_adds"))
	if !errors.Is(err, ErrCompileBudget) {
		t.Fatalf("Inspect: %v, want ErrCompileBudget", err)
	}
	// Within the default budget (1 GiB), the 16 MiB Go guest passes (it
	// takes about 370 MB to validate).
	info, err := NewInspector(InspectConfig{Compile: workerBudget(t, time.Minute, 0)}).Inspect(context.Background(), bigGoGuest(t))
	if err != nil || info.ABI != ABIFunLess || len(info.Imports) == 0 {
		t.Fatalf("the big Go guest through the worker: %+v %v", info, err)
	}
	if _, err := in.Inspect(context.Background(), fixture(t, "table_grow")); !errors.Is(err, ErrModuleLimit) {
		t.Fatalf("table_grow: %v", err)
	}
}
