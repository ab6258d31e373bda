package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/events"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testenv"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// createFunction stores module "_" function name with spec and tiny code.
func createFunction(t *testing.T, st store.Store, name string, spec fnspec.Spec) store.Function {
	t.Helper()
	code := []byte("\x00asm" + name)
	fn, err := st.CreateFunction(t.Context(), store.Function{Module: store.DefaultModule, Name: name,
		Digest: runtime.Digest(code), ABI: "wasi-command", Spec: spec}, code)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

// TestConnectAnswersPerEventAndSink: what the API turns into FunLess's 207
// has one entry per event and per sink, in order: nil for a cloud event
// subscribed and for an edge-local one (the agents'), the error for a
// broker or a sink that cannot be reached.
func TestConnectAnswersPerEventAndSink(t *testing.T) {
	t.Parallel()
	broker := testenv.Mosquitto(t)
	host, portText, _ := strings.Cut(broker, ":")
	port, _ := strconv.Atoi(portText)
	couch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/db" {
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(couch.Close)

	st := openStore(t)
	evs, err := events.New(events.Config{Invoke: func(context.Context, string, string, []byte) error { return nil },
		Instance: "wiring-test-" + testenv.Unique(), Logger: slog.New(slog.DiscardHandler), ConnectTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- evs.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })

	topic := "wisp/wiring/" + testenv.Unique()
	fn := createFunction(t, st, "f", fnspec.Spec{
		Events: []fnspec.Event{
			{Type: "mqtt", Params: fnspec.EventParams{Host: host, Port: port, Topic: topic}},
			{Type: "mqtt", Params: fnspec.EventParams{Host: "127.0.0.1", Port: 1, Topic: topic}}, // nothing listens
			{Type: "mqtt", Params: fnspec.EventParams{Topic: topic, Local: true}},
			{Type: "timer", Params: fnspec.EventParams{Every: "1h"}}, // timers have nothing to connect
		},
		Sinks: []fnspec.Sink{
			{Type: "couchdb", Params: fnspec.SinkParams{URL: couch.URL + "/db"}},
			{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://127.0.0.1:1/db", Password: "hunter2"}},
		},
	})
	d := &distributor{events: evs, store: st, log: slog.New(slog.DiscardHandler)}
	evErrs, sinkErrs := d.Connect(t.Context(), fn)
	if len(evErrs) != 4 || evErrs[0] != nil || evErrs[1] == nil || evErrs[2] != nil || evErrs[3] != nil {
		t.Fatalf("event errors = %v, want [nil, an error, nil, nil]", evErrs)
	}
	if len(sinkErrs) != 2 || sinkErrs[0] != nil || sinkErrs[1] == nil || strings.Contains(sinkErrs[1].Error(), "hunter2") {
		t.Fatalf("sink errors = %v, want [nil, an error without the password]", sinkErrs)
	}
	// A function without events or sinks has nothing to report.
	if e, s := d.Connect(t.Context(), createFunction(t, st, "plain", fnspec.Spec{})); e != nil || s != nil {
		t.Fatalf("plain function: %v %v", e, s)
	}
}

// TestCloudBindings: edge-local events, timers and functions whose
// settings are unreadable (fnspec's "Bad stored data") get no cloud
// subscription.
func TestCloudBindings(t *testing.T) {
	cloud := fnspec.Event{Type: "mqtt", Params: fnspec.EventParams{Host: "b", Port: 1883, Topic: "t"}}
	local := fnspec.Event{Type: "mqtt", Params: fnspec.EventParams{Topic: "l", Local: true}}
	timer := fnspec.Event{Type: "timer", Params: fnspec.EventParams{Cron: "* * * * *"}}
	fns := []store.Function{
		{Module: "m", Name: "a", Spec: fnspec.Spec{Events: []fnspec.Event{cloud, local, timer}}},
		{Module: "m", Name: "bad", Spec: fnspec.Spec{Events: []fnspec.Event{cloud}}, Unreadable: &fnspec.Error{Field: "sinks", Reason: "x"}},
		{Module: "m", Name: "none"},
	}
	got := cloudBindings(fns, slog.New(slog.DiscardHandler))
	want := []events.Binding{{Module: "m", Function: "a", Host: "b", Port: 1883, Topic: "t"}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("cloudBindings = %+v, want %+v", got, want)
	}
}

// recordingDispatcher records requests and answers ok.
type recordingDispatcher struct {
	mu   sync.Mutex
	reqs []invoke.Request
}

func (r *recordingDispatcher) Invoke(_ context.Context, req invoke.Request) (invoke.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return invoke.Result{Output: json.RawMessage(`{}`)}, nil
}

// TestEventInvoker: a cloud message invokes the stored function like a
// REST call with the message as args, source "mqtt"; a function that is
// gone or whose settings are unreadable is not dispatched.
func TestEventInvoker(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	sink := fnspec.Sink{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://c/db"}}
	fn := createFunction(t, st, "f", fnspec.Spec{Sinks: []fnspec.Sink{sink}, Metadata: fnspec.Metadata{Tag: "edge"}})
	disp := &recordingDispatcher{}
	call := eventInvoker(st, disp)
	if err := call(t.Context(), fn.Module, fn.Name, []byte(`{"t":21.5}`)); err != nil {
		t.Fatal(err)
	}
	if len(disp.reqs) != 1 {
		t.Fatalf("dispatched %d requests, want 1", len(disp.reqs))
	}
	r := disp.reqs[0]
	if r.Module != fn.Module || r.Function != "f" || r.Digest != fn.Digest || string(r.Args) != `{"t":21.5}` ||
		r.Source != invoke.SourceMQTT || r.Metadata.Tag != "edge" || len(r.Sinks) != 1 || r.Sinks[0] != sink {
		t.Fatalf("request = %+v", r)
	}
	if err := call(t.Context(), fn.Module, "gone", []byte(`{}`)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing function: %v, want ErrNotFound", err)
	}
	bad := eventInvoker(unreadableStore{st}, disp)
	if err := bad(t.Context(), fn.Module, fn.Name, []byte(`{}`)); !errors.Is(err, invoke.ErrFailed) || !errors.Is(err, fnspec.ErrInvalid) {
		t.Fatalf("unreadable function: %v, want invoke.ErrFailed caused by fnspec.ErrInvalid", err)
	}
	if len(disp.reqs) != 1 {
		t.Fatalf("dispatched %d requests, want still 1", len(disp.reqs))
	}
}

// unreadableStore reads every function as if its stored metadata did not
// parse.
type unreadableStore struct{ store.Store }

func (u unreadableStore) GetFunction(ctx context.Context, module, name string) (store.Function, error) {
	fn, err := u.Store.GetFunction(ctx, module, name)
	fn.Unreadable = &fnspec.Error{Field: "metadata", Reason: "malformed JSON"}
	return fn, err
}
