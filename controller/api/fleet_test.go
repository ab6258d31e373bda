package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testwait"
)

type recordingDist struct {
	mu      sync.Mutex
	stored  []string // "name digest wait"
	removed []string
}

func (d *recordingDist) Stored(_ context.Context, fn store.Function, code []byte, wait bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if runtime.Digest(code) != fn.Digest {
		panic("code does not match digest")
	}
	w := "nowait"
	if wait {
		w = "wait"
	}
	d.stored = append(d.stored, fn.Name+" "+fn.Digest+" "+w)
}

func (d *recordingDist) Removed(_ context.Context, ds []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.removed = append(d.removed, ds...)
}

func (d *recordingDist) Changed(context.Context) {}

func (d *recordingDist) snapshot() ([]string, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.stored), slices.Clone(d.removed)
}

type fakeTokens struct{ ttl time.Duration }

func (f *fakeTokens) CreateJoinToken(_ context.Context, ttl time.Duration) (fleet.JoinTokenInfo, error) {
	f.ttl = ttl
	info := fleet.JoinTokenInfo{ID: "jt_01ab", Token: "wispjoin1." + strings.Repeat("A", 43) + ".c2VjcmV0"}
	if ttl > 0 {
		e := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		info.Expires = &e
	}
	return info, nil
}

type fakeAgents []fleet.AgentInfo

func (f fakeAgents) Agents() []fleet.AgentInfo { return f }

func TestDistributionAndAgents(t *testing.T) {
	t.Parallel()
	dist := &recordingDist{}
	agents := fakeAgents{{ID: "ag_0123", Name: "edge1", Connected: true, OS: "linux", Arch: "arm64",
		Engine: "compiler", Labels: []string{"zone=a"}, LastSeen: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}}
	tokens := &fakeTokens{}
	e := start(t, openEmbedded(t), func(c *Config) { c.Distributor = dist; c.Agents = agents; c.JoinTokens = tokens })

	wat, c := fixture(t, "hello_wat.wasm"), fixture(t, "hello_c.wasm")
	dw, dc := runtime.Digest(wat), runtime.Digest(c)
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "f"}, part{name: "wait_for_workers", value: "true"}, codePart(wat))
	wantData[nameItem](t, status, body, 201)
	// wait_for_workers=true: the push happened before the answer.
	if stored, _ := dist.snapshot(); !slices.Equal(stored, []string{"f " + dw + " wait"}) {
		t.Fatalf("stored after create = %v", stored)
	}
	status, body = e.upload("POST", "/v1/fn/_", part{name: "name", value: "g"}, codePart(wat)) // same code
	wantData[nameItem](t, status, body, 201)

	// Update f to other code: wat is still used by g, so nothing is dropped.
	status, body = e.upload("PUT", "/v1/fn/_/f", part{name: "wait_for_workers", value: "1"}, codePart(c))
	wantData[nameItem](t, status, body, 200)
	if _, removed := dist.snapshot(); len(removed) != 0 {
		t.Fatalf("dropped code still in use: %v", removed)
	}
	// Delete g: now wat is unused and dropped.
	status, body = e.do(req{method: "DELETE", path: "/v1/fn/_/g"})
	if status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if _, removed := dist.snapshot(); !slices.Equal(removed, []string{dw}) {
		t.Fatalf("removed = %v, want [%s]", removed, dw)
	}
	// Deleting a module drops its functions' code.
	e.json("POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "m"}})
	status, body = e.upload("POST", "/v1/fn/m", part{name: "name", value: "h"}, part{name: "wait_for_workers", value: "true"}, codePart(wat))
	wantData[nameItem](t, status, body, 201)
	status, _ = e.do(req{method: "DELETE", path: "/v1/fn/m"})
	if _, removed := dist.snapshot(); status != 204 || !slices.Equal(removed, []string{dw, dw}) {
		t.Fatalf("after module delete: %d removed=%v", status, removed)
	}
	testwait.For(t, 10*time.Second, "the asynchronous push of g", func() bool { s, _ := dist.snapshot(); return len(s) == 4 }) // g was pushed asynchronously
	if stored, _ := dist.snapshot(); !slices.Contains(stored, "f "+dc+" wait") {
		t.Fatalf("update not pushed: %v", stored)
	}

	status, body = e.do(req{method: "GET", path: "/v1/agents"})
	got := wantData[[]map[string]any](t, status, body, 200)
	if len(got) != 1 || got[0]["name"] != "edge1" {
		t.Fatalf("agents = %s", body)
	}
	status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "carol"}})
	carol := wantData[newSubject](t, status, body, 201)
	status, body = e.do(req{method: "GET", path: "/v1/agents", token: "Bearer " + carol.Token})
	wantError(t, status, body, 403, "admin")
	status, body = e.do(req{method: "GET", path: "/v1/agents", token: noToken})
	wantError(t, status, body, 401, "")

	// Join tokens.
	status, body = e.json("POST", "/v1/admin/tokens", map[string]string{"ttl": "24h"})
	tok := wantData[fleet.JoinTokenInfo](t, status, body, 201)
	if tokens.ttl != 24*time.Hour || tok.Expires == nil || !strings.HasPrefix(tok.Token, "wispjoin1.") {
		t.Fatalf("token %+v ttl %v", tok, tokens.ttl)
	}
	status, body = e.do(req{method: "POST", path: "/v1/admin/tokens"})
	if tok := wantData[fleet.JoinTokenInfo](t, status, body, 201); tok.Expires != nil || tokens.ttl != 0 {
		t.Fatalf("no ttl: %+v", tok)
	}
	status, body = e.json("POST", "/v1/admin/tokens", map[string]string{"ttl": "soon"})
	wantError(t, status, body, 400, "ttl")
	status, body = e.do(req{method: "POST", path: "/v1/admin/tokens", token: "Bearer " + carol.Token})
	wantError(t, status, body, 403, "admin")
}

// connectingDist is a Distributor whose Connect fails the second sink.
type connectingDist struct{ recordingDist }

func (d *connectingDist) Connect(_ context.Context, fn store.Function) (events, sinks []error) {
	return []error{nil}, []error{nil, errors.New("sink http://c:5984/b: connection refused")}
}

func TestPartialConnect207(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t), func(c *Config) { c.Distributor = &connectingDist{} })
	events := `[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"t"}}]`
	sinks := `[{"type":"couchdb","params":{"url":"http://c:5984/a"}},{"type":"couchdb","params":{"url":"http://c:5984/b"}}]`
	wat := fixture(t, "hello_wat.wasm")
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "p"}, part{name: "events", value: events}, part{name: "sinks", value: sinks}, codePart(wat))
	got := wantData[partialBody](t, status, body, 207)
	if got.Name != "p" || got.EventsMetadata != (connectCounts{1, 0, 1}) || got.SinksMetadata != (connectCounts{1, 1, 2}) ||
		got.Sinks[1].Status != "error" || !strings.Contains(got.Sinks[1].Message, "connection refused") {
		t.Fatalf("207 body %s", body)
	}
	// The function is stored anyway.
	status, body = e.do(req{method: "GET", path: "/v1/fn/_/p"})
	wantData[functionInfo](t, status, body, 200)
	// Without events or sinks there is nothing to connect: 201.
	status, body = e.upload("POST", "/v1/fn/_", part{name: "name", value: "q"}, codePart(wat))
	wantData[nameItem](t, status, body, 201)
}
