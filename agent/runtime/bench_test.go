package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

var helloInput = []byte(`{"name":"Ada"}`)

// bareHello is the floor: plain wazero instantiating the same module and
// calling __invoke with the three host functions it imports, no limits, no
// bookkeeping.
type bareHello struct {
	rt  wazero.Runtime
	cm  wazero.CompiledModule
	cfg wazero.ModuleConfig
	out []byte
}

func newBareHello(b *testing.B, code []byte) *bareHello {
	ctx := context.Background()
	h := &bareHello{rt: wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())}
	wasi_snapshot_preview1.MustInstantiate(ctx, h.rt)
	_, err := h.rt.NewHostModuleBuilder("fl_imps").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, s []uint64) {
		m.Memory().Write(api.DecodeU32(s[0]), helloInput)
	}), []api.ValueType{api.ValueTypeI32}, nil).Export("__get_input_data").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, s []uint64) {
		b, _ := m.Memory().Read(api.DecodeU32(s[0]), api.DecodeU32(s[1]))
		h.out = append(h.out[:0], b...)
	}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__insert_response").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}),
		[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__insert_error").
		Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if h.cm, err = h.rt.CompileModule(ctx, code); err != nil {
		b.Fatal(err)
	}
	h.cfg = wazero.NewModuleConfig().WithName("").WithStartFunctions()
	b.Cleanup(func() { h.rt.Close(ctx) })
	return h
}

func (h *bareHello) call(ctx context.Context) error {
	m, err := h.rt.InstantiateModule(ctx, h.cm, h.cfg)
	if err != nil {
		return err
	}
	defer m.Close(ctx)
	if _, err := m.ExportedFunction("_initialize").Call(ctx); err != nil {
		return err
	}
	_, err = m.ExportedFunction("__invoke").Call(ctx, uint64(len(helloInput)))
	return err
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkWarmInvoke times Wisp's warm invocation of the C hello function
// (FunLess ABI, compiled module cached) interleaved with the bare wazero
// floor in the same loop, and reports both p50s and their ratio.
func BenchmarkWarmInvoke(b *testing.B) {
	code := fixture(b, "hello_c")
	r := newRuntime(b, Config{})
	d := load(b, r, "hello_c")
	bare := newBareHello(b, code)
	ctx := context.Background()
	var wisp, floor []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := bare.call(ctx); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := r.Invoke(ctx, d, Request{Input: helloInput}); err != nil {
			b.Fatal(err)
		}
		wisp = append(wisp, time.Since(t1))
		floor = append(floor, t1.Sub(t0))
	}
	pw, pf := percentile(wisp, 0.5), percentile(floor, 0.5)
	b.ReportMetric(float64(pw.Nanoseconds()), "wisp-p50-ns")
	b.ReportMetric(float64(percentile(wisp, 0.99).Nanoseconds()), "wisp-p99-ns")
	b.ReportMetric(float64(pf.Nanoseconds()), "bare-p50-ns")
	b.ReportMetric(float64(pw)/float64(pf), "ratio-p50")
}

// BenchmarkInvoke reports time and allocations per warm call, per fixture.
func BenchmarkInvoke(b *testing.B) {
	for _, name := range []string{"hello_c", "hello_wat", "log", "hello_go", "hello_rust", "hello_fl_rust"} { // log: hello_wat's size, 2 log lines
		b.Run(name, func(b *testing.B) {
			r := newRuntime(b, Config{})
			d := load(b, r, name)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Invoke(ctx, d, Request{Input: helloInput}); err != nil {
					b.Fatal(err)
				}
			}
			s := r.Stats()
			b.ReportMetric(float64(s.SpareHits)/float64(max(s.Invocations, 1)), "spare-hit-ratio")
		})
	}
}

// BenchmarkGoGuestLatency measures one call to the Go guest when the agent
// is not saturated: with spares the instantiation happened in the background
// beforehand; without, the caller waits for it.
func BenchmarkGoGuestLatency(b *testing.B) {
	for _, mode := range []struct {
		name   string
		spares int
	}{{"spares", 2}, {"no-spares", -1}} {
		b.Run(mode.name, func(b *testing.B) {
			r := newRuntime(b, Config{SpareInstances: mode.spares})
			d := load(b, r, "hello_go")
			ctx := context.Background()
			r.Invoke(ctx, d, Request{Input: helloInput})
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				if mode.spares > 0 {
					deadline := time.Now().Add(10 * time.Second)
					for r.Stats().Spares < int64(mode.spares) && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
				}
				b.StartTimer()
				t0 := time.Now()
				if _, err := r.Invoke(ctx, d, Request{Input: helloInput}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
		})
	}
}

// BenchmarkInvokeNoSpares shows the Go guest's cost without spare instances.
func BenchmarkInvokeNoSpares(b *testing.B) {
	r := newRuntime(b, Config{SpareInstances: -1})
	d := load(b, r, "hello_go")
	ctx := context.Background()
	var inst []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		res, err := r.Invoke(ctx, d, Request{Input: helloInput})
		if err != nil {
			b.Fatal(err)
		}
		inst = append(inst, res.Instantiate)
	}
	b.ReportMetric(float64(percentile(inst, 0.5).Microseconds()), "instantiate-p50-µs")
}

// BenchmarkLoad compares a cold compile with a load after a restart that
// finds the compiled code in the disk cache.
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{"hello_c", "hello_fl_rust", "hello_go"} {
		code := fixture(b, name)
		for _, mode := range []string{"cold", "disk-cache"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				warmDir := b.TempDir()
				if mode == "disk-cache" {
					r, err := New(ctx, Config{CacheDir: warmDir})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r.Load(ctx, code); err != nil {
						b.Fatal(err)
					}
					r.Close(ctx)
				}
				i := 0
				for b.Loop() {
					b.StopTimer()
					dir := warmDir
					if mode == "cold" {
						dir = filepath.Join(b.TempDir(), strconv.Itoa(i))
						i++
					}
					r, err := New(ctx, Config{CacheDir: dir})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if _, err := r.Load(ctx, code); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if mode == "disk-cache" && r.Stats().DiskCacheHits != 1 {
						b.Fatal("expected a disk cache hit")
					}
					r.Close(ctx)
					b.StartTimer()
				}
			})
		}
	}
}

// rssBytes reads the process's resident set size.
func rssBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			_, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

// parallelRSS runs n parallel invocations of the 1 MiB-memory function and
// returns the peak RSS growth seen while they ran.
func parallelRSS(t testing.TB, r *Runtime, d string, n int) int64 {
	before, err := rssBytes()
	if err != nil {
		t.Skip(err)
	}
	var peak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if v, err := rssBytes(); err == nil && v > peak {
				peak = v
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var failed sync.Once
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Invoke(context.Background(), d, Request{Limits: Limits{Timeout: time.Minute}}); err != nil {
				failed.Do(func() { t.Error(err) })
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	return peak - before
}

func TestParallelRSSBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes RSS meaningless")
	}
	// One function, allowed every slot and a queue for every call: the
	// bound under test is MaxConcurrent's.
	r := newRuntime(t, Config{MaxConcurrent: 16, MaxPerFunction: 16, MaxQueuedPerFunction: 1000})
	d := load(t, r, "mem1m")
	parallelRSS(t, r, d, 200) // warm up allocator and pools
	grown := parallelRSS(t, r, d, 1000)
	t.Logf("1000 parallel 1 MiB invocations: peak RSS growth %d MiB", grown>>20)
	// 16 live instances × 1 MiB, plus Go heap slack and goroutine stacks;
	// without the bound it would be ~1 GiB.
	if grown > 256<<20 {
		t.Fatalf("peak RSS grew %d MiB", grown>>20)
	}
}

// BenchmarkParallelRSS reports the RSS growth of 1,000 parallel invocations
// of a function with 1 MiB of linear memory.
func BenchmarkParallelRSS(b *testing.B) {
	slots := 8 * runtime.GOMAXPROCS(0) // the default MaxConcurrent
	r := newRuntime(b, Config{MaxPerFunction: slots, MaxQueuedPerFunction: 1000})
	d := load(b, r, "mem1m")
	parallelRSS(b, r, d, 200)
	var worst int64
	for b.Loop() {
		worst = max(worst, parallelRSS(b, r, d, 1000))
	}
	b.ReportMetric(float64(worst)/(1<<20), "peak-rss-growth-MiB")
}

// BenchmarkPageLevelReset times warm calls of each FunLess-ABI fixture on
// a runtime whose linear memory is reset page by page (what runs) and, in
// the same loop, on one that clears every region whole as before issue 16.
func BenchmarkPageLevelReset(b *testing.B) {
	for _, name := range []string{"hello_wat", "hello_c", "env_c", "hello_fl_rust", "mem1m"} {
		b.Run(name, func(b *testing.B) {
			now := newRuntime(b, Config{})
			before := newRuntime(b, Config{})
			before.memory.wholeReset = true
			dn, db := load(b, now, name), load(b, before, name)
			ctx := context.Background()
			var tn, tb []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := before.Invoke(ctx, db, Request{Input: helloInput}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := now.Invoke(ctx, dn, Request{Input: helloInput}); err != nil {
					b.Fatal(err)
				}
				tn = append(tn, time.Since(t1))
				tb = append(tb, t1.Sub(t0))
			}
			pn, pb := percentile(tn, 0.5), percentile(tb, 0.5)
			b.ReportMetric(float64(pn.Nanoseconds()), "page-p50-ns")
			b.ReportMetric(float64(pb.Nanoseconds()), "whole-p50-ns")
			b.ReportMetric(float64(pn)/float64(pb), "ratio-p50")
		})
	}
}
