package wasmtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	wt "github.com/bytecodealliance/wasmtime-go/v39"

	"github.com/wispfn/wisp/agent/runtime"
)

var input = []byte(`{"name":"Ada"}`)

// peerFixtures are the FunLess-ABI fixtures of testdata/wasm that answer
// without a network: the benchmark function in C, WAT, with logs, with
// getenv, with 1 MiB of memory filled, in Rust (a cdylib as FunLess's Rust
// guests are) and in Go. isolation_rust is left out: it reads its 1 MiB of
// memory byte by byte, so it times the engines' generated code (wasmtime's
// Cranelift is many times faster there), not what a call costs around it.
var peerFixtures = []string{"hello_wat", "hello_c", "log3", "env_c", "mem1m", "hello_fl_rust", "hello_go"}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// funless is wasmtime set up as FunLess's worker: one engine and one
// linker, the module compiled once.
type funless struct {
	engine *wt.Engine
	linker *wt.Linker
	module *wt.Module
	output []byte
}

func newFunless(t testing.TB, code []byte) *funless {
	f := &funless{engine: wt.NewEngine()}
	f.linker = wt.NewLinker(f.engine)
	if err := f.linker.DefineWasi(); err != nil {
		t.Fatal(err)
	}
	i32 := wt.NewValType(wt.KindI32)
	params := func(n int) []*wt.ValType { return slices.Repeat([]*wt.ValType{i32}, n) }
	memory := func(c *wt.Caller) []byte { return c.GetExport("memory").Memory().UnsafeData(c) }
	host := map[string]struct {
		n  int
		fn func(*wt.Caller, []wt.Val) ([]wt.Val, *wt.Trap)
	}{
		"__get_input_data": {1, func(c *wt.Caller, a []wt.Val) ([]wt.Val, *wt.Trap) {
			copy(memory(c)[a[0].I32():], input)
			return nil, nil
		}},
		"__insert_response": {2, func(c *wt.Caller, a []wt.Val) ([]wt.Val, *wt.Trap) {
			p, n := a[0].I32(), a[1].I32()
			f.output = append(f.output[:0], memory(c)[p:p+n]...)
			return nil, nil
		}},
		"__insert_error": {2, func(c *wt.Caller, a []wt.Val) ([]wt.Val, *wt.Trap) {
			p, n := a[0].I32(), a[1].I32()
			f.output = append(f.output[:0], memory(c)[p:p+n]...)
			return nil, nil
		}},
		"__console_log":  {2, func(*wt.Caller, []wt.Val) ([]wt.Val, *wt.Trap) { return nil, nil }},
		"__http_request": {10, func(*wt.Caller, []wt.Val) ([]wt.Val, *wt.Trap) { return nil, nil }},
	}
	for name, h := range host {
		if err := f.linker.FuncNew("fl_imps", name, wt.NewFuncType(params(h.n), nil), h.fn); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if f.module, err = wt.NewModule(f.engine, code); err != nil {
		t.Fatal(err)
	}
	return f
}

// call is one FunLess invocation: fresh store, instantiate, _initialize
// if exported, __invoke.
func (f *funless) call() error {
	store := wt.NewStore(f.engine)
	defer store.Close()
	store.SetWasi(wt.NewWasiConfig())
	inst, err := f.linker.Instantiate(store, f.module)
	if err != nil {
		return err
	}
	if init := inst.GetFunc(store, "_initialize"); init != nil {
		if _, err := init.Call(store); err != nil {
			return err
		}
	}
	_, err = inst.GetFunc(store, "__invoke").Call(store, int32(len(input)))
	return err
}

func newWisp(b *testing.B, cfg runtime.Config) *runtime.Runtime {
	ctx := context.Background()
	r, err := runtime.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(ctx) })
	return r
}

func p50(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[(len(d)-1)/2]
}

// BenchmarkPeer calls each fixture with wasmtime and with Wisp in turn, in
// the same loop, and reports both p50 latencies and their ratio (issue
// 16's target: Wisp ≤ 0.5 × wasmtime for every FunLess-ABI fixture). Wisp
// is timed twice: with the default Config (ratio-p50), where a module
// that is slow to instantiate (the Go guest) is served by spare instances
// made in the background, and without spares (ratio-cold-p50), where every
// call pays its instantiation: what a call costs when the agent has no
// idle CPU.
func BenchmarkPeer(b *testing.B) {
	ctx := context.Background()
	for _, name := range peerFixtures {
		b.Run(name, func(b *testing.B) {
			code := fixture(b, name)
			f := newFunless(b, code)
			r := newWisp(b, runtime.Config{})
			// cold: no spare instances, so every call instantiates (and
			// runs _initialize) on the caller's time, as on an agent with
			// no idle CPU to make spares in the background.
			cold := newWisp(b, runtime.Config{SpareInstances: -1})
			info, err := r.Load(ctx, code)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cold.Load(ctx, code); err != nil {
				b.Fatal(err)
			}
			// Both answer the same before anything is timed.
			if err := f.call(); err != nil {
				b.Fatal(err)
			}
			res, err := r.Invoke(ctx, info.Digest, runtime.Request{Input: input})
			if err != nil {
				b.Fatal(err)
			}
			if string(res.Output) != string(f.output) {
				b.Fatalf("wisp answered %s, wasmtime %s", res.Output, f.output)
			}
			var tw, tc, tp []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := f.call(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := r.Invoke(ctx, info.Digest, runtime.Request{Input: input}); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if _, err := cold.Invoke(ctx, info.Digest, runtime.Request{Input: input}); err != nil {
					b.Fatal(err)
				}
				tc = append(tc, time.Since(t2))
				tw = append(tw, t2.Sub(t1))
				tp = append(tp, t1.Sub(t0))
			}
			w, c, p := p50(tw), p50(tc), p50(tp)
			b.ReportMetric(float64(w.Nanoseconds()), "wisp-p50-ns")
			b.ReportMetric(float64(c.Nanoseconds()), "wisp-cold-p50-ns")
			b.ReportMetric(float64(p.Nanoseconds()), "wasmtime-p50-ns")
			b.ReportMetric(float64(w)/float64(p), "ratio-p50")
			b.ReportMetric(float64(c)/float64(p), "ratio-cold-p50")
		})
	}
}
