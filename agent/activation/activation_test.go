package activation

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

type env struct {
	st   *state.State
	exec *executor.Executor
}

// start opens a state file holding the test functions (and one whose code
// is missing) as the desired set, and a runtime configured by cfg.
func start(t testing.TB, cfg runtime.Config) *env {
	t.Helper()
	dir := t.TempDir()
	cfg.CacheDir = dir
	rt, err := runtime.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt.Close(context.Background())
		st.Close()
	})
	var fs []protocol.DesiredFunction
	for _, f := range []string{"hello_c", "guest_error", "loop", "log", "stdioflood", "env_c"} {
		code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", f+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		d := runtime.Digest(code)
		if err := st.PutCode(d, code); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, protocol.DesiredFunction{Module: "_", Name: f, Digest: d})
	}
	fs[len(fs)-1].Env = []string{"GREETING=from the desired set"} // env_c
	fs = append(fs, protocol.DesiredFunction{Module: "_", Name: "missing_code", Digest: "sha256:00"})
	if err := st.SetDesired(fs); err != nil {
		t.Fatal(err)
	}
	return &env{st: st, exec: executor.New(rt, st, nil, nil)}
}

func (e *env) runner(t testing.TB, cfg Config) *Runner {
	t.Helper()
	cfg.Executor, cfg.State = e.exec, e.st
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) outbox(t testing.TB) []protocol.OutboxEntry {
	t.Helper()
	entries, err := e.st.Outbox(100)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestRunRecordsLogs: the outbox entry keeps the function's log lines, in
// order with their stream and time, and a flooding function's entry stays
// within the agent's log bound (plus the marker line).
func TestRunRecordsLogs(t *testing.T) {
	e := start(t, runtime.Config{Limits: runtime.Limits{LogLines: 10, LogBytes: 1000, Timeout: time.Minute}})
	r := e.runner(t, Config{})
	ctx := context.Background()
	from := uint64(time.Now().UnixMicro())
	if _, err := r.Run(ctx, Request{Module: "_", Function: "log", Args: []byte(`{}`), Source: SourceLocalAPI}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, Request{Module: "_", Function: "stdioflood", Args: []byte(`{}`), Source: SourceLocalMQTT}); err != nil {
		t.Fatal(err)
	}
	entries := e.outbox(t)
	if len(entries) != 2 {
		t.Fatalf("%d outbox entries, want 2", len(entries))
	}
	logs := entries[0].Logs
	if len(logs) != 2 || logs[0].Text != "first line" || logs[1].Text != "second line" ||
		logs[0].Stream != protocol.StreamConsole || logs[0].UnixUS < from || logs[1].UnixUS < logs[0].UnixUS {
		t.Errorf("outbox entry logs %+v, want first line, second line on the console stream, timed", logs)
	}
	flood := entries[1]
	if n := len(flood.Logs); n == 0 || n > 10+1 || flood.Logs[n-1].Stream != protocol.StreamPlatform ||
		!strings.HasPrefix(flood.Logs[n-1].Text, "log truncated") {
		t.Errorf("flood entry logs %+v, want at most 10 lines and the marker", flood.Logs)
	}
	// 1000 bytes of text, a marker, per-line overhead and the entry's fields.
	if size := len(flood.Append(nil)); size > 2<<10 {
		t.Errorf("the flood's outbox entry is %d bytes, over its bound", size)
	}
}

// TestRunRecords: what ran is in the outbox with its source and result,
// the function's own failure included; what did not run, or could not be
// recorded, is a typed error and not in the outbox.
func TestRunRecords(t *testing.T) {
	e := start(t, runtime.Config{})
	recorded := 0
	r := e.runner(t, Config{OnRecord: func() { recorded++ }})
	ctx := context.Background()

	res, err := r.Run(ctx, Request{Module: "_", Function: "hello_c", Args: []byte(`{"name":"Ada"}`), Source: SourceLocalAPI})
	if err != nil || res.Err != nil || string(res.Output) != `{"payload":"Hello Ada!"}` || len(res.ActivationID) != 26 {
		t.Fatalf("hello: %+v %v", res, err)
	}
	res, err = r.Run(ctx, Request{Module: "_", Function: "guest_error", Args: []byte(`{}`), Source: SourceLocalMQTT, ActivationID: "given-id"})
	var rerr *runtime.Error
	if err != nil || !errors.As(res.Err, &rerr) || rerr.Kind != runtime.KindGuestError || res.ActivationID != "given-id" {
		t.Fatalf("guest error: %+v %v", res, err)
	}
	for name, tc := range map[string]struct {
		fn   string
		want error
	}{
		"not desired": {"nope", ErrUnknownFunction},
		"no code":     {"missing_code", ErrNoCode},
	} {
		if res, err := r.Run(ctx, Request{Module: "_", Function: tc.fn, Args: []byte(`{}`)}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %+v %v, want %v", name, res, err, tc.want)
		}
	}
	failing := e.runner(t, Config{Recorder: failingRecorder{e.st}})
	if _, err := failing.Run(ctx, Request{Module: "_", Function: "hello_c", Args: []byte(`{}`)}); !errors.Is(err, ErrNotRecorded) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("failed append: %v", err)
	}

	got := e.outbox(t)
	if len(got) != 2 || recorded != 2 {
		t.Fatalf("outbox %+v, OnRecord called %d times: want the two that ran", got, recorded)
	}
	if got[0].Function != "hello_c" || got[0].Source != SourceLocalAPI || got[0].Code != protocol.OK || string(got[0].Output) != `{"payload":"Hello Ada!"}` {
		t.Errorf("first entry %+v", got[0])
	}
	if got[1].ActivationID != "given-id" || got[1].Source != SourceLocalMQTT || got[1].Code != protocol.GuestError || got[1].Output != nil {
		t.Errorf("second entry %+v", got[1])
	}
}

// TestOverloadedIsNotRecorded: a call refused because its function's queue
// is full did not run and is not recorded (a trigger leaves its message
// for redelivery).
func TestOverloadedIsNotRecorded(t *testing.T) {
	e := start(t, runtime.Config{MaxPerFunction: 1, MaxQueuedPerFunction: 1})
	r := e.runner(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 { // one runs, one waits
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx, Request{Module: "_", Function: "loop", Args: []byte(`{}`)}) }()
	}
	defer func() { cancel(); wg.Wait() }()
	testwait.For(t, 30*time.Second, "one running and one queued loop call", func() bool {
		st := e.exec.Runtime().Stats()
		return st.Busy == 1 && st.Waiting == 1
	})
	if res, err := r.RunMessage(context.Background(), Request{Module: "_", Function: "loop", Args: []byte(`{}`), Source: SourceLocalMQTT}, [32]byte{1}, false); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a call with a full queue: %+v %v", res, err)
	}
	if n := e.st.OutboxLen(); n != 0 {
		t.Fatalf("the refused call was recorded (%d entries)", n)
	}
}

// TestFunctionRefusalsAreRecorded: args over the input limit (which only
// the local API checks before running) and quarantined code are recorded
// failures, so that a trigger acknowledges its message instead of getting
// it again and again.
func TestFunctionRefusalsAreRecorded(t *testing.T) {
	e := start(t, runtime.Config{})
	r := e.runner(t, Config{})
	ctx := context.Background()
	big := []byte(`{"s":"` + strings.Repeat("x", e.exec.Runtime().Limits().InputBytes) + `"}`)
	res, err := r.RunMessage(ctx, Request{Module: "_", Function: "hello_c", Args: big, Source: SourceLocalMQTT}, MessageKey("_", "hello_c", "t", big), false)
	var rerr *runtime.Error
	if err != nil || !errors.As(res.Err, &rerr) || rerr.Kind != runtime.KindInputTooLarge {
		t.Fatalf("args over the limit: %+v %v", res, err)
	}
	hello, _ := e.st.DesiredFunction("_", "hello_c")
	if _, err := e.st.SetQuarantine([]protocol.QuarantineEntry{{Digest: hello.Digest, Reason: "the agent died while running this code", SinceUnixMS: 1}}); err != nil {
		t.Fatal(err)
	}
	res, err = r.Run(ctx, Request{Module: "_", Function: "hello_c", Args: []byte(`{}`)})
	if err != nil || !errors.Is(res.Err, state.ErrQuarantined) {
		t.Fatalf("quarantined: %+v %v", res, err)
	}
	got := e.outbox(t)
	if len(got) != 2 || got[0].Code != protocol.InputTooLarge || got[1].Code != protocol.Quarantined {
		t.Fatalf("outbox %+v, want the too large call and the quarantined one", got)
	}
}

// TestRunMessageSkipsRecordedDuplicates: a redelivered message whose key
// is recorded does not run again; a first delivery always runs, and so
// does a redelivery the agent never recorded.
func TestRunMessageSkipsRecordedDuplicates(t *testing.T) {
	e := start(t, runtime.Config{})
	r := e.runner(t, Config{})
	ctx := context.Background()
	req := Request{Module: "_", Function: "hello_c", Args: []byte(`{"name":"M"}`), Source: SourceLocalMQTT}
	key := MessageKey("_", "hello_c", "a/b", req.Args)
	if key == MessageKey("_", "hello_c", "a/c", req.Args) || key == MessageKey("_", "guest_error", "a/b", req.Args) {
		t.Fatal("message keys do not tell topics or functions apart")
	}
	if res, err := r.RunMessage(ctx, req, MessageKey("_", "hello_c", "other", req.Args), true); err != nil || res.Duplicate {
		t.Fatalf("an unrecorded redelivery: %+v %v", res, err)
	}
	first, err := r.RunMessage(ctx, req, key, false)
	if err != nil || first.Duplicate {
		t.Fatalf("first delivery: %+v %v", first, err)
	}
	again, err := r.RunMessage(ctx, req, key, false)
	if err != nil || again.Duplicate || again.ActivationID == first.ActivationID {
		t.Fatalf("the same payload delivered anew (no DUP flag) must run: %+v %v", again, err)
	}
	dup, err := r.RunMessage(ctx, req, key, true)
	if err != nil || !dup.Duplicate || dup.ActivationID == "" {
		t.Fatalf("a recorded redelivery: %+v %v", dup, err)
	}
	if n := e.st.OutboxLen(); n != 3 {
		t.Fatalf("outbox holds %d entries, want 3 (the duplicate did not run)", n)
	}
}

// TestUnsyncedOnlyForRun: Request.Unsynced skips the fsync wait for Run,
// never for RunMessage.
func TestUnsyncedOnlyForRun(t *testing.T) {
	e := start(t, runtime.Config{})
	spy := &spyRecorder{State: e.st}
	r := e.runner(t, Config{Recorder: spy})
	req := Request{Module: "_", Function: "hello_c", Args: []byte(`{}`), Unsynced: true}
	if _, err := r.Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RunMessage(context.Background(), req, [32]byte{7}, false); err != nil {
		t.Fatal(err)
	}
	req.Unsynced = false
	if _, err := r.Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got, want := [2]int{spy.synced, spy.unsynced}, [2]int{2, 1}; got != want {
		t.Fatalf("synced/unsynced appends %v, want %v", got, want)
	}
}

// failingRecorder fails every append.
type failingRecorder struct{ *state.State }

func (failingRecorder) AppendOutboxKeyed(*protocol.OutboxEntry, []byte) error {
	return errors.New("disk full")
}

func (failingRecorder) AppendOutboxUnsynced(*protocol.OutboxEntry) error {
	return errors.New("disk full")
}

// spyRecorder counts which append each activation used.
type spyRecorder struct {
	*state.State
	mu               sync.Mutex
	synced, unsynced int
}

func (r *spyRecorder) AppendOutboxKeyed(*protocol.OutboxEntry, []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced++
	return nil
}

func (r *spyRecorder) AppendOutboxUnsynced(*protocol.OutboxEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unsynced++
	return nil
}

// TestClosedIsNotRecorded: once the runtime is closed (the agent stops),
// a call does not run and is not recorded, so a trigger message that
// arrives then is delivered again after the restart instead of being
// acknowledged as failed.
func TestClosedIsNotRecorded(t *testing.T) {
	e := start(t, runtime.Config{})
	r := e.runner(t, Config{})
	if err := e.exec.Runtime().Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := Request{Module: "_", Function: "hello_c", Args: []byte(`{}`), Source: SourceLocalMQTT}
	if res, err := r.RunMessage(context.Background(), req, [32]byte{3}, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %+v %v", res, err)
	}
	if n := e.st.OutboxLen(); n != 0 {
		t.Fatalf("the call was recorded (%d entries)", n)
	}
}

// TestRunWithDesiredEnv: a local run gets the function's env from its
// desired-set entry.
func TestRunWithDesiredEnv(t *testing.T) {
	e := start(t, runtime.Config{})
	r := e.runner(t, Config{})
	res, err := r.Run(context.Background(), Request{Module: "_", Function: "env_c", Args: []byte(`{"name":"GREETING"}`), Source: SourceLocalAPI})
	if err != nil || res.Err != nil || string(res.Output) != `{"value":"from the desired set"}` {
		t.Fatalf("%s %v %v", res.Output, err, res.Err)
	}
}
