package runtime

import (
	"context"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwasm"
)

// TestStopUnderGC: guests looping forever (FunLess ABI and WASI command)
// or recursing for ever without a loop, many at once, are all stopped at their deadline while the collector runs
// over and over. A guest that never returned to Go would make the
// collector's stop-the-world wait for it, and this test hang.
func TestStopUnderGC(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 8, MaxPerFunction: 8, MaxQueuedPerFunction: 100})
	loops := []string{load(t, r, "loop"), load(t, r, "wasi_loop"), load(t, r, "recurse")}
	stop := make(chan struct{})
	var gc sync.WaitGroup
	gc.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				goruntime.GC()
			}
		}
	})
	done := make(chan struct{})
	errs := make(chan error, 32)
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Go(func() {
				_, err := r.Invoke(context.Background(), loops[i%len(loops)], Request{Limits: Limits{Timeout: 50 * time.Millisecond}})
				errs <- err
			})
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("looping guests were not stopped")
	}
	close(stop)
	gc.Wait()
	close(errs)
	for err := range errs {
		checkErr(t, err, ErrTimeout, "") // stopped, or its wait for a slot was
	}
}

// TestStopInterpreter: the interpreter (armv7's engine), which keeps
// wazero's own check, stops a loop and a recursion without a loop too.
func TestStopInterpreter(t *testing.T) {
	r := newRuntime(t, Config{Engine: EngineInterpreter})
	for _, fixture := range []string{"loop", "recurse"} {
		_, err := r.Invoke(context.Background(), load(t, r, fixture), Request{Limits: Limits{Timeout: 100 * time.Millisecond}})
		checkErr(t, err, ErrTimeout, "")
	}
}

// TestStopCheckRefuses: a module that names a global it does not declare
// (which the added globals would make valid) or exports a name the runtime
// adds is refused before compiling.
func TestStopCheckRefuses(t *testing.T) {
	noGlobal := testwasm.Module{Body: append([]byte{0x23, 0, testwasm.OpDrop}, testwasm.I32Const(nil, 0)...)}.Bytes()
	setFar := testwasm.Module{Globals: 1, Body: append(testwasm.I32Const(nil, 1), 0x24, 2, 0x41, 0)}.Bytes()
	for name, code := range map[string][]byte{"global.get past the globals": noGlobal, "global.set past the globals": setFar} {
		if _, err := addStopCheck(code); KindOf(err) != KindInvalidModule || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := addStopCheck(withExportRenamed(t, "__invoke", stopExport)); KindOf(err) != KindInvalidModule || !strings.Contains(err.Error(), "reserves") {
		t.Errorf("exporting %s: %v", stopExport, err)
	}
}

// withExportRenamed is a FunLess-ABI module whose export from is named to
// instead (the export section written anew).
func withExportRenamed(t *testing.T, from, to string) []byte {
	code := testwasm.Module{Body: testwasm.I32Const(nil, 0)}.Bytes()
	secs, _ := sections(code)
	out := append([]byte{}, code[:8]...)
	for _, s := range secs {
		if s.id != secExport {
			out = append(out, code[s.start:s.end]...)
			continue
		}
		body := strings.Replace(string(code[s.body:s.end]), string(rune(len(from)))+from, string(rune(len(to)))+to, 1)
		out = appendSection(out, secExport, []byte(body))
	}
	if err := wazeroAccepts(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStopStartSection: a start function that loops forever, which wazero
// would run inside instantiation, is stopped at the deadline too.
func TestStopStartSection(t *testing.T) {
	m := testwasm.Module{Body: testwasm.I32Const(nil, 0), ExtraFunctions: 1, Extra: []byte{testwasm.OpLoop, testwasm.OpBlockEmpty, testwasm.OpBr, 0, testwasm.OpEnd}}
	code := m.Bytes()
	secs, _ := sections(code)
	var out []byte
	out = append(out, code[:8]...)
	for _, s := range secs {
		if s.id == secCode {
			out = appendSection(out, secStart, []byte{1}) // function 1, the loop
		}
		out = append(out, code[s.start:s.end]...)
	}
	if err := wazeroAccepts(out); err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, Config{})
	info, err := r.Load(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Invoke(context.Background(), info.Digest, Request{Limits: Limits{Timeout: 100 * time.Millisecond}})
	checkErr(t, err, ErrTimeout, "stopped after")
}

// FuzzAddStopCheck: instrumenting never panics, and never turns a module
// wazero refuses into one it accepts or the reverse.
func FuzzAddStopCheck(f *testing.F) {
	f.Add(testwasm.Module{Body: append([]byte{testwasm.OpLoop, testwasm.OpBlockEmpty, testwasm.OpBr, 0, testwasm.OpEnd}, testwasm.I32Const(nil, 0)...)}.Bytes())
	f.Add(testwasm.Module{Globals: 2, Body: append([]byte{0x23, 1, testwasm.OpDrop}, testwasm.I32Const(nil, 0)...)}.Bytes())
	f.Fuzz(func(t *testing.T, code []byte) {
		if _, err := Scan(code, ModuleLimits{}); err != nil {
			return
		}
		out, err := addStopCheck(code)
		werr := wazeroAccepts(code)
		if err != nil {
			return // refused: it never compiles
		}
		if oerr := wazeroAccepts(out); (werr == nil) != (oerr == nil) {
			t.Fatalf("original: %v; instrumented: %v", werr, oerr)
		}
	})
}
