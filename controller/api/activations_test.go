package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

// testActivations records activations in the store and reads them back
// through the REST API.
func testActivations(t *testing.T, e *env) {
	t.Helper()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 5 {
		id := activationid.New(base.Add(time.Duration(i) * time.Minute))
		ids = append(ids, id)
		a := store.Activation{ID: id, Module: "_", Function: fmt.Sprintf("f%d", i%2), Digest: "sha256:ab", Agent: "ag_1",
			Source: "local-api", Output: []byte(`{"n":1}`), Started: base.Add(time.Duration(i) * time.Minute), Duration: time.Millisecond}
		if i == 4 {
			a.Code, a.Message, a.Output = int(protocol.Trap), "trap: unreachable", nil
		}
		if _, err := e.st.RecordActivation(context.Background(), a, nil); err != nil {
			t.Fatal(err)
		}
	}
	status, body := e.do(req{method: "GET", path: "/v1/activations/" + ids[0]})
	got := wantData[activationInfo](t, status, body, 200)
	if got.ID != ids[0] || got.Status != "success" || string(got.Output) != `{"n":1}` || got.DurationUS != 1000 {
		t.Fatalf("activation %s", body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/activations/" + ids[4]})
	if got := wantData[activationInfo](t, status, body, 200); got.Status != "error" || got.Message == "" {
		t.Fatalf("failed activation %s", body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/activations?function=f0"})
	if list := wantData[[]activationInfo](t, status, body, 200); len(list) != 3 || list[0].ID != ids[4] {
		t.Fatalf("function filter, newest first: %s", body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/activations?since=2026-11-25T10:03:00Z&limit=1&order=oldest"})
	if list := wantData[[]activationInfo](t, status, body, 200); len(list) != 1 || list[0].ID != ids[3] {
		t.Fatalf("since+limit: %s", body)
	}
	status, body = e.do(req{method: "GET", path: "/v1/activations?module=_&after=" + ids[3]})
	if list := wantData[[]activationInfo](t, status, body, 200); len(list) != 1 || list[0].ID != ids[4] {
		t.Fatalf("after: %s", body)
	}
	if got.Truncated || !strings.Contains(string(body), `"truncated":false`) {
		t.Fatalf("a whole record shows truncated: %s", body)
	}

	// A truncated record: its output, cut, is shown as a string, never as
	// the JSON it may happen to be.
	for _, tt := range []struct{ stored, want string }{{`{"n":"abc`, `"{\"n\":\"abc"`}, {`12345`, `"12345"`}} {
		id := activationid.New(base.Add(time.Hour))
		a := store.Activation{ID: id, Module: "_", Function: "big", Digest: "sha256:ab", Agent: "ag_1", Source: "api",
			Output: []byte(tt.stored), Started: base.Add(time.Hour), Truncated: true}
		if _, err := e.st.RecordActivation(context.Background(), a, nil); err != nil {
			t.Fatal(err)
		}
		status, body := e.do(req{method: "GET", path: "/v1/activations/" + id})
		got := wantData[activationInfo](t, status, body, 200)
		if !got.Truncated || string(got.Output) != tt.want {
			t.Fatalf("truncated record with output %s: %s", tt.stored, body)
		}
	}
	status, body = e.do(req{method: "GET", path: "/v1/activations?function=big"})
	if list := wantData[[]activationInfo](t, status, body, 200); len(list) != 2 || !list[0].Truncated || !list[1].Truncated {
		t.Fatalf("list of truncated records: %s", body)
	}

	status, body = e.do(req{method: "GET", path: "/v1/activations/0123456789ABCDEFGHJKMNPQRS"})
	wantError(t, status, body, 404, "not found")
	status, body = e.do(req{method: "GET", path: "/v1/activations?since=yesterday"})
	wantError(t, status, body, 400, "since")
	status, body = e.do(req{method: "GET", path: "/v1/activations?limit=0"})
	wantError(t, status, body, 400, "limit")
}

func TestSinkFailuresShown(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t))
	sinks := `[{"type":"couchdb","params":{"url":"http://127.0.0.1:1/db"}}]`
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "s"}, part{name: "sinks", value: sinks}, codePart(fixture(t, "hello_wat.wasm")))
	wantData[nameItem](t, status, body, 201)
	status, body = e.do(req{method: "GET", path: "/v1/fn/_/s"})
	if fi := wantData[functionInfo](t, status, body, 200); len(fi.SinkFailures) != 0 {
		t.Fatalf("fresh function shows failures: %s", body)
	}
	id := activationid.New(time.Now())
	a := store.Activation{ID: id, Module: "_", Function: "s", Source: "api", Output: []byte(`{}`), Started: time.Now()}
	if _, err := e.st.RecordActivation(context.Background(), a, [][]byte{[]byte(`{"type":"couchdb","params":{"url":"http://127.0.0.1:1/db"}}`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.DeliveryFailed(context.Background(), id, 0, "connection refused", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	status, body = e.do(req{method: "GET", path: "/v1/fn/_/s"})
	fi := wantData[functionInfo](t, status, body, 200)
	if len(fi.SinkFailures) != 1 || fi.SinkFailures[0].Activation != id || fi.SinkFailures[0].LastError != "connection refused" || fi.SinkFailures[0].Attempts != 1 {
		t.Fatalf("sink failures: %s", body)
	}
}

// TestActivationLogsShown: an agent's log lines, recorded by the recorder
// (the outbox path: an edge activation after a partition) into each real
// store, come back from GET /v1/activations/{id} and from the list, in
// order with their time and stream, as openapi.yaml says; a hostile log is
// shown as the controller bounded it.
func TestActivationLogsShown(t *testing.T) {
	t.Parallel()
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, ts.open(t))
			ctx := t.Context()
			rec := activations.New(activations.Config{Store: e.st, Bounds: activations.Bounds{LogLines: 5, LogBytes: 200}})
			at := time.Date(2026, 12, 4, 16, 30, 1, 234567000, time.UTC)
			us := uint64(at.UnixMicro())
			logged, flood, quiet := activationid.New(at), activationid.New(at.Add(time.Second)), activationid.New(at.Add(2*time.Second))
			var hostile []protocol.LogLine
			for i := range 10_000 {
				hostile = append(hostile, protocol.LogLine{UnixUS: us + uint64(i), Stream: protocol.StreamConsole, Text: strings.Repeat("x", i%100)})
			}
			err := rec.Outbox(ctx, "ag_1", []protocol.OutboxEntry{
				{ActivationID: logged, Module: "_", Function: "f", Source: "local-api", Output: []byte(`{}`), StartedUnixUS: us, Logs: []protocol.LogLine{
					{UnixUS: us, Stream: protocol.StreamConsole, Text: "first line"},
					{UnixUS: us + 1500, Stream: protocol.StreamStderr, Text: "ünïcode ✓ \xff"},
					{UnixUS: us + 2000, Stream: protocol.StreamPlatform, Text: "log truncated: 1 more lines and 3 bytes dropped"},
					{Stream: protocol.StreamConsole, Text: "an old agent's line"},
				}},
				{ActivationID: flood, Module: "_", Function: "f", Source: "local-mqtt", Output: []byte(`{}`), StartedUnixUS: us, Logs: hostile},
				{ActivationID: quiet, Module: "_", Function: "f", Source: "local-api", Output: []byte(`{}`), StartedUnixUS: us},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []logLineInfo{
				{Time: "2026-12-04T16:30:01.234567Z", Stream: "console", Text: "first line"},
				{Time: "2026-12-04T16:30:01.236067Z", Stream: "stderr", Text: "ünïcode ✓ \uFFFD"},
				{Time: "2026-12-04T16:30:01.236567Z", Stream: "wisp", Text: "log truncated: 1 more lines and 3 bytes dropped"},
				{Stream: "console", Text: "an old agent's line"},
			}
			status, body := e.do(req{method: "GET", path: "/v1/activations/" + logged})
			got := wantData[activationInfo](t, status, body, 200)
			if fmt.Sprint(got.Logs) != fmt.Sprint(want) || got.Truncated {
				t.Fatalf("logs %+v, want %+v", got.Logs, want)
			}
			if !strings.Contains(string(body), `"time":"2026-12-04T16:30:01.234567Z","stream":"console","text":"first line"`) {
				t.Errorf("the JSON of a line: %s", body)
			}

			status, body = e.do(req{method: "GET", path: "/v1/activations/" + flood})
			got = wantData[activationInfo](t, status, body, 200)
			n := len(got.Logs)
			if !got.Truncated || n != 5+1 || got.Logs[n-1].Stream != "wisp" || !strings.Contains(got.Logs[n-1].Text, "dropped") {
				t.Fatalf("a hostile log: truncated %v, %d lines %+v; want 5 and the marker", got.Truncated, n, got.Logs)
			}

			status, body = e.do(req{method: "GET", path: "/v1/activations/" + quiet})
			if got := wantData[activationInfo](t, status, body, 200); got.Logs == nil || len(got.Logs) != 0 || !strings.Contains(string(body), `"logs":[]`) {
				t.Fatalf("no lines must show as []: %s", body)
			}

			status, body = e.do(req{method: "GET", path: "/v1/activations?function=f&order=oldest"})
			list := wantData[[]activationInfo](t, status, body, 200)
			if len(list) != 3 || fmt.Sprint(list[0].Logs) != fmt.Sprint(want) || len(list[1].Logs) != 6 || len(list[2].Logs) != 0 {
				t.Fatalf("the list's logs: %s", body)
			}
		})
	}
}
