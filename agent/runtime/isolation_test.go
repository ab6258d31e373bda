package runtime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// isolationCase is one call whose output must be the same whatever ran
// before it, in this runtime, in any module.
type isolationCase struct {
	fixture string
	input   string
	env     []string
	want    string // "" for the first output seen (then every call must give it)
}

var isolationCases = []isolationCase{
	// Markers in globals, a data segment, the bss, a far page, memory.size,
	// a table and a grown page (FunLess ABI and WASI command).
	{fixture: "isolation", want: `{"clean":"11111111"}`},
	{fixture: "isolation_cmd", want: `{"clean":"11111111"}`},
	// A Rust guest: a static counter, and every byte from __heap_base to the
	// end of memory (a previous call left 256 KiB of 0xAB on its heap).
	{fixture: "isolation_rust", want: `{"calls":0,"dirty":0,"pages":17}`},
	{fixture: "isolation_rust_cmd"}, // std's start-up allocates: the same each time
	// The Rust fixtures of testdata/wasm, with inputs of different sizes.
	{fixture: "hello_fl_rust", input: `{"name":"` + strings.Repeat("x", 3000) + `"}`, want: `{"payload":"Hello ` + strings.Repeat("x", 3000) + `!"}`},
	{fixture: "hello_fl_rust", input: `{"name":"Ada"}`, want: `{"payload":"Hello Ada!"}`},
	{fixture: "hello_rust", input: `{"name":"Ada"}`, want: `{"payload":"Hello Ada!"}`},
	{fixture: "echo_rust", input: `{"a":"` + strings.Repeat("y", 5000) + `"}`, want: `{"a":"` + strings.Repeat("y", 5000) + `"}`},
	{fixture: "echo_rust", input: `{}`, want: `{}`},
	// A Go guest (wasip1 reactor): its runtime starts in _initialize, in
	// memory its packed data segments filled (packData), in regions the
	// pool passes between modules.
	{fixture: "hello_go", input: `{"name":"` + strings.Repeat("g", 2000) + `"}`, want: `{"payload":"Hello ` + strings.Repeat("g", 2000) + `!"}`},
	{fixture: "hello_go", input: `{"name":"Ada"}`, want: `{"payload":"Hello Ada!"}`},
	// A function's config env (issue 14) reaches only its own calls.
	{fixture: "env_c", input: `{"name":"SECRET"}`, env: []string{"SECRET=one"}, want: `{"value":"one"}`},
	{fixture: "env_c", input: `{"name":"SECRET"}`, want: `{"value":null}`},
	{fixture: "env_c", input: `{"name":"SECRET"}`, env: []string{"OTHER=two"}, want: `{"value":null}`},
	{fixture: "envcmd_c", input: `{"name":"SECRET"}`, env: []string{"SECRET=three"}, want: `{"value":"three"}`},
	{fixture: "envcmd_c", input: `{"name":"SECRET"}`, want: `{"value":null}`},
}

// TestIsolation: no state of one call (linear memory, globals, tables,
// memory size, environment) is visible to the next call, of the same
// function or another, whether the call gets a fresh instance or a spare,
// one after the other or in parallel. The isolation fixtures leave markers
// everywhere and report any they find; the calls are interleaved so that
// the memory regions the pool recycles pass from module to module (the
// FunLess and Rust fixtures share the 2 MiB size).
func TestIsolation(t *testing.T) {
	for _, mode := range []struct {
		name string
		cfg  Config
	}{
		// Room for every fixture compiled, interpreted too: this is about
		// isolation, not the module cache.
		{"fresh", Config{SpareInstances: -1, MaxCompiledBytes: 256 << 20}},
		{"spares", Config{SpareThreshold: time.Nanosecond, SpareInstances: 2, MaxCompiledBytes: 256 << 20}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			r := newRuntime(t, mode.cfg)
			ctx := context.Background()
			digests := map[string]string{}
			for _, c := range isolationCases {
				if digests[c.fixture] == "" {
					digests[c.fixture] = load(t, r, c.fixture)
				}
			}
			var mu sync.Mutex
			first := map[int]string{}
			check := func(i, round int) error {
				c := isolationCases[i]
				res, err := r.Invoke(ctx, digests[c.fixture], Request{Input: []byte(c.input), Env: c.env})
				if err != nil {
					return fmt.Errorf("%s (case %d, round %d): %v", c.fixture, i, round, err)
				}
				want := c.want
				mu.Lock()
				if want == "" {
					if first[i] == "" {
						first[i] = string(res.Output)
					}
					want = first[i]
				}
				mu.Unlock()
				if string(res.Output) != want {
					return fmt.Errorf("%s (case %d, round %d, spare %v): got %.200s, want %.200s", c.fixture, i, round, res.Spare, res.Output, want)
				}
				return nil
			}
			for round := range 4 {
				for i := range isolationCases {
					if err := check(i, round); err != nil {
						t.Fatal(err)
					}
				}
			}
			if out := first[3]; !strings.HasPrefix(out, `{"calls":0,`) {
				t.Fatalf("isolation_rust_cmd: %s, want calls 0", out)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 4*len(isolationCases))
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for round := range 3 {
						for k := range isolationCases {
							i := (k + g*3) % len(isolationCases)
							if err := check(i, 10+round); err != nil {
								errs <- err
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if mode.cfg.SpareInstances > 0 && r.Stats().SpareHits == 0 {
				t.Error("no call was served by a spare instance")
			}
		})
	}
}
