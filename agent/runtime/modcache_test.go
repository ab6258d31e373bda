package runtime

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
)

// variant makes a distinct module (another digest) of the same code, by
// appending a custom section naming it.
func variant(code []byte, name string) []byte {
	out := append([]byte{}, code...)
	payload := append([]byte{byte(len(name))}, name...)
	out = append(out, 0, byte(len(payload)))
	return append(out, payload...)
}

// TestPrepare: with a disk cache, Prepare compiles into it without keeping
// the module in memory, and the first Load is a disk hit; without one it
// compiles nothing, and the first Load compiles.
func TestPrepare(t *testing.T) {
	ctx := context.Background()
	code := variant(fixture(t, "hello_fl_rust"), t.Name())

	interp := newRuntime(t, Config{Engine: EngineInterpreter})
	if info, err := interp.Prepare(ctx, code); err != nil || info.Compiled || interp.Stats().Compiles != 0 {
		t.Fatalf("Prepare without a disk cache compiled: %+v %v", info, err)
	}
	if info, err := interp.Load(ctx, code); err != nil || !info.Compiled {
		t.Fatalf("first Load: %+v %v", info, err)
	}

	// Room for one such module: a first Prepare keeps it, a second one
	// (another module) does not evict it.
	r := newRuntime(t, Config{CacheDir: t.TempDir(), MaxCompiledBytes: 1 << 20})
	if r.Engine() != EngineCompiler {
		t.Skip("the interpreter has no disk cache to prepare into")
	}
	kept, err := r.Prepare(ctx, variant(code, "kept"))
	if err != nil || !kept.Compiled || !r.Loaded(kept.Digest) {
		t.Fatalf("Prepare with room: %+v %v, loaded %v", kept, err, r.Loaded(kept.Digest))
	}
	info, err := r.Prepare(ctx, code)
	if err != nil || !info.Compiled || info.ABI != ABIFunLess {
		t.Fatalf("Prepare: %+v %v", info, err)
	}
	if r.Loaded(info.Digest) || !r.Loaded(kept.Digest) || r.Stats().Compiles != 2 || r.Stats().Modules != 1 {
		t.Fatalf("a prepared module without room was kept in memory, or evicted another: %+v", r.Stats())
	}
	if again, err := r.Prepare(ctx, code); err != nil || again.Compiled || !again.DiskCacheHit || r.Stats().Compiles != 2 {
		t.Fatalf("second Prepare compiled again: %+v %v", again, err)
	}
	loaded, err := r.Load(ctx, code)
	if err != nil || !loaded.DiskCacheHit {
		t.Fatalf("Load after Prepare: %+v %v", loaded, err)
	}
	checkHello(t, r, loaded.Digest)

	bad := []byte("\x00asm\x01\x00\x00\x00\x01\xff")
	if _, err := r.Prepare(ctx, bad); err == nil {
		t.Fatal("Prepare accepted a broken module")
	}
}

// TestCompiledBytesBound: the in-memory modules stay within
// MaxCompiledBytes by their estimated size, not their count; an evicted
// module comes back from the disk cache; a module estimated over the bound
// is kept alone.
func TestCompiledBytesBound(t *testing.T) {
	ctx := context.Background()
	code := fixture(t, "hello_fl_rust")
	p, err := Scan(code, ModuleLimits{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, Config{CacheDir: t.TempDir(), MaxCompiledBytes: 3 << 20})
	if r.Engine() != EngineCompiler {
		t.Skip("the interpreter has no disk cache to reload from")
	}
	one := r.compiledCost(p, len(code)+8)
	if one < 256<<10 || one > 1<<20 {
		t.Fatalf("estimate for hello_fl_rust %d KiB, measured about 480", one>>10)
	}
	var digests []string
	for i := range 10 {
		info, err := r.Load(ctx, variant(code, fmt.Sprintf("v%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, info.Digest)
		checkHello(t, r, info.Digest)
		if s := r.Stats(); s.ModuleBytes > 3<<20 {
			t.Fatalf("%d modules estimated at %d KiB, over the bound", s.Modules, s.ModuleBytes>>10)
		}
	}
	s := r.Stats()
	if want := int((3 << 20) / one); s.Modules != want || s.Evictions != uint64(10-want) {
		t.Fatalf("%d modules kept, %d evicted; want %d kept", s.Modules, s.Evictions, want)
	}
	if r.Loaded(digests[0]) {
		t.Fatal("the least recently used module was kept")
	}
	start := time.Now()
	info, err := r.Load(ctx, variant(code, "v0"))
	if err != nil || !info.DiskCacheHit {
		t.Fatalf("reload after eviction: %+v %v", info, err)
	}
	t.Logf("first load after eviction (disk cache): %v", time.Since(start))
	checkHello(t, r, info.Digest)

	small := newRuntime(t, Config{CacheDir: t.TempDir(), MaxCompiledBytes: 64 << 10})
	d := load(t, small, "hello_fl_rust")
	checkHello(t, small, d)
	if s := small.Stats(); s.Modules != 1 || s.ModuleBytes != 64<<10 {
		t.Fatalf("a module over the bound is not kept alone: %+v", s)
	}
}

// TestIdleModulesGo: a module no call used for ModuleIdle leaves memory.
func TestIdleModulesGo(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, Config{CacheDir: t.TempDir(), ModuleIdle: 100 * time.Millisecond})
	idle := load(t, r, "hello_c")
	busy := load(t, r, "hello_wat")
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := r.Invoke(ctx, busy, Request{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	testwait.For(t, 5*time.Second, "the idle module to go", func() bool { return !r.Loaded(idle) })
	if !r.Loaded(busy) {
		t.Fatal("a module in use was evicted")
	}
	if s := r.Stats(); s.IdleEvictions != 1 {
		t.Fatalf("idle evictions %d", s.IdleEvictions)
	}
}

// TestLoadJoinsPrepare: a call that needs a module a push is preparing
// waits for it, then takes it from memory (the cache had room) or from the
// disk cache: one compile, never two.
func TestLoadJoinsPrepare(t *testing.T) {
	for _, room := range []bool{true, false} {
		t.Run(fmt.Sprintf("room=%v", room), func(t *testing.T) {
			ctx := context.Background()
			bound := int64(8 << 20)
			if !room {
				bound = 64 << 10 // under one hello_fl_rust
			}
			r := newRuntime(t, Config{CacheDir: t.TempDir(), MaxCompiledBytes: bound})
			if r.Engine() != EngineCompiler {
				t.Skip("the interpreter has no disk cache to prepare into")
			}
			code := variant(fixture(t, "hello_fl_rust"), t.Name())
			done := make(chan error, 1)
			go func() { _, err := r.Prepare(ctx, code); done <- err }()
			testwait.For(t, 5*time.Second, "the prepare to start", func() bool {
				r.mu.Lock()
				defer r.mu.Unlock()
				return len(r.preparing) == 1 || r.Stats().Compiles == 1
			})
			info, err := r.Load(ctx, code)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s := r.Stats()
			if room && (s.Compiles != 1 || s.MemoryCacheHits != 1) {
				t.Fatalf("compiles %d, memory hits %d: want the prepared module", s.Compiles, s.MemoryCacheHits)
			}
			if !room && (s.Compiles != 2 || s.DiskCacheHits != 1 || !info.DiskCacheHit) {
				t.Fatalf("compiles %d (want the prepare's and a disk load), disk hits %d", s.Compiles, s.DiskCacheHits)
			}
			checkHello(t, r, info.Digest)
		})
	}
}
