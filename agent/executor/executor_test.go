package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/protocol"
)

func newExecutor(t *testing.T, dir string) (*Executor, *prometheus.Registry, func()) {
	t.Helper()
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: dir})
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
	if !e.rt.Loaded(d) || len(e.Digests()) != 1 {
		t.Fatal("pushed code not compiled or not stored")
	}
	if err := e.Drop(d); err != nil {
		t.Fatal(err)
	}
	if e.rt.Loaded(d) || len(e.Digests()) != 0 {
		t.Fatal("dropped code still there")
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
