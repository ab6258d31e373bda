package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wispfn/wisp/internal/testing/testwasm"
)

// initialMemory instantiates code without running anything in it
// (interpreter, no start function) and returns its linear memory, or the
// instantiation error.
func initialMemory(code []byte) ([]byte, error) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, runtimeConfig(EngineInterpreter, nil))
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, code)
	if err != nil {
		return nil, err
	}
	mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithStartFunctions().WithName(""))
	if err != nil {
		return nil, err
	}
	mem, _ := mod.Memory().Read(0, mod.Memory().Size())
	return bytes.Clone(mem), nil
}

// dataSegments counts the segments of code's data section (-1 when it
// cannot be read).
func dataSegments(t *testing.T, code []byte) int {
	secs, ok := sections(code)
	if !ok {
		t.Fatal("module framing broken")
	}
	for _, s := range secs {
		if s.id == secData {
			r := &reader{b: code[s.body:s.end]}
			n, err := r.u32()
			if err != nil {
				return -1
			}
			return int(n)
		}
	}
	return 0
}

// withData appends a data section holding segs (raw encoded segments) to
// a module of pages pages, and a data count section when dataCount.
func withData(pages uint32, segs [][]byte, dataCount bool) []byte {
	code := testwasm.Module{MemoryPages: pages, Body: testwasm.I32Const(nil, 0)}.Bytes()
	secs, _ := sections(code)
	var out []byte
	for _, s := range secs {
		if s.id == secCode && dataCount {
			out = append(out, secDataCount)
			out = testwasm.ULEB(out, uint64(len(testwasm.ULEB(nil, uint64(len(segs))))))
			out = testwasm.ULEB(out, uint64(len(segs)))
		}
		out = append(out, code[s.start:s.end]...)
	}
	body := testwasm.ULEB(nil, uint64(len(segs)))
	for _, s := range segs {
		body = append(body, s...)
	}
	out = append(append([]byte{}, code[:8]...), out...)
	out = append(out, secData)
	out = testwasm.ULEB(out, uint64(len(body)))
	return append(out, body...)
}

// active encodes an active segment of memory 0 at off.
func active(off int32, init []byte) []byte {
	b := testwasm.I32Const([]byte{0}, off)
	b = append(b, testwasm.OpEnd)
	return append(testwasm.ULEB(b, uint64(len(init))), init...)
}

// spread returns n active segments of size bytes every stride bytes from
// base, segment i filled with byte i+1, in reverse order when reversed.
func spread(n, size, stride int, base int32, reversed bool) [][]byte {
	segs := make([][]byte, n)
	for i := range n {
		j := i
		if reversed {
			j = n - 1 - i
		}
		segs[j] = active(base+int32(i*stride), bytes.Repeat([]byte{byte(i + 1)}, size))
	}
	return segs
}

// TestPackDataSameMemory: a packed module's memory after instantiation is
// byte for byte the original's, for every fixture and for segments that
// are sparse, dense, out of order or at the end of memory; the Go guest
// is packed into a few segments.
func TestPackDataSameMemory(t *testing.T) {
	cases := map[string][]byte{
		"dense":        withData(2, spread(500, 7, 9, 16, false), false),
		"gaps":         withData(4, spread(300, 3, 300, 0, false), false),
		"reversed":     withData(2, spread(200, 5, 40, 1000, true), false),
		"to the end":   withData(1, spread(100, 8, 655, 65536-99*655-8, false), false),
		"empty inits":  withData(1, spread(100, 0, 10, 5, false), false),
		"explicit mem": withData(1, append(spread(99, 2, 4, 0, false), append([]byte{2, 0}, active(500, []byte{9})[1:]...)), false),
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "wasm", "*.wasm"))
	if err != nil || len(files) < 20 {
		t.Fatalf("fixtures: %v, %d files", err, len(files))
	}
	for _, f := range files {
		code, _ := os.ReadFile(f)
		cases[strings.TrimSuffix(filepath.Base(f), ".wasm")] = code
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			packed := packData(code)
			want, werr := initialMemory(code)
			got, gerr := initialMemory(packed)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("original: %v; packed: %v", werr, gerr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("memory differs after packing (%d bytes against %d)", len(got), len(want))
			}
			if len(packed) > 2*len(code) {
				t.Fatalf("packed to %d bytes from %d", len(packed), len(code))
			}
		})
	}
	go1 := cases["hello_go"]
	if before, after := dataSegments(t, go1), dataSegments(t, packData(go1)); after > 10 || before < 10_000 {
		t.Fatalf("hello_go: %d data segments packed into %d", before, after)
	}
	if n := dataSegments(t, packData(cases["dense"])); n != 1 {
		t.Fatalf("dense: packed into %d segments, want 1", n)
	}
}

// TestPackDataLeavesAlone: modules whose segments the guest could tell
// apart, or whose encoding packing would change the meaning of, are
// compiled as they are.
func TestPackDataLeavesAlone(t *testing.T) {
	many := spread(100, 4, 8, 0, false)
	passive := append([]byte{1}, testwasm.ULEB(nil, 1)...)
	passive = append(passive, 7)
	nonShortest := []byte{0, testwasm.OpI32Const, 0x80, 0x00, testwasm.OpEnd, 1, 7} // i32.const 0 in two bytes
	global := []byte{0, 0x23, 0, testwasm.OpEnd, 1, 7}                              // global.get 0
	for name, code := range map[string][]byte{
		"few segments": withData(1, spread(minPackSegments-1, 4, 8, 0, false), false),
		"data count":   withData(1, many, true),
		"passive":      withData(1, append(many, passive), false),
		"overlap":      withData(1, append(many, active(2, []byte{1, 2, 3})), false),
		"non-shortest": withData(1, append(many, nonShortest), false),
		"global.get":   withData(1, append(many, global), false),
		"no data":      testwasm.Module{Body: testwasm.I32Const(nil, 0)}.Bytes(),
		"truncated":    withData(1, many, false)[:200],
		"not wasm":     []byte("\x00asm"),
	} {
		if got := packData(code); !bytes.Equal(got, code) {
			t.Errorf("%s: packed (%d bytes to %d)", name, len(code), len(got))
		}
	}
}

// TestPackDataBounded: zeros filled between segments never make the module
// more than twice its size, however its segments are spread.
func TestPackDataBounded(t *testing.T) {
	for _, stride := range []int{2, 64, 200, maxPackGap + 1, maxPackGap + 2} {
		code := withData(100, spread(20_000, 1, stride, 0, false), false)
		packed := packData(code)
		if len(packed) > 2*len(code) {
			t.Errorf("stride %d: %d bytes packed into %d", stride, len(code), len(packed))
		}
		want, werr := initialMemory(code)
		got, gerr := initialMemory(packed)
		if werr != nil || gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("stride %d: memory differs (%v, %v)", stride, werr, gerr)
		}
	}
}

// FuzzPackData: packing never panics, never turns a module wazero refuses
// into one it accepts or the reverse, and never changes the memory a
// module starts with.
func FuzzPackData(f *testing.F) {
	f.Add(withData(1, spread(100, 3, 5, 0, false), false))
	f.Add(withData(1, spread(70, 1, 300, 0, true), false))
	f.Add(withData(1, append(spread(70, 2, 2, 0, false), active(65535, []byte{1, 2})), false))
	f.Fuzz(func(t *testing.T, code []byte) {
		packed := packData(code)
		if bytes.Equal(packed, code) {
			return
		}
		want, werr := initialMemory(code)
		got, gerr := initialMemory(packed)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("original: %v; packed: %v", werr, gerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("memory differs after packing")
		}
	})
}
