package api

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/store"
)

// fakeQuarantine holds QuarantineInfos in memory.
type fakeQuarantine struct {
	mu      sync.Mutex
	entries []fleet.QuarantineInfo
}

func (f *fakeQuarantine) ListQuarantine(context.Context) ([]fleet.QuarantineInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fleet.QuarantineInfo(nil), f.entries...), nil
}

func (f *fakeQuarantine) ReleaseQuarantine(_ context.Context, digest string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.entries {
		if e.Digest == digest {
			f.entries = append(f.entries[:i], f.entries[i+1:]...)
			return nil
		}
	}
	return store.ErrNotFound
}

// TestQuarantineRoutes: the admin lists quarantined and held code, with the
// functions that use it, and releases it; a release of unknown or malformed
// digests, or by anyone else, is refused.
func TestQuarantineRoutes(t *testing.T) {
	t.Parallel()
	hello := fixture(t, "hello_c.wasm")
	d := runtime.Digest(hello)
	other := "sha256:" + strings.Repeat("ab", 32)
	until := time.Date(2030, 1, 1, 0, 0, 30, 0, time.UTC)
	q := &fakeQuarantine{entries: []fleet.QuarantineInfo{
		{Digest: d, State: fleet.QuarantineStateQuarantined, Reason: "the agent died while running this code", Agent: "ag_01", AgentName: "edge1", Since: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Digest: other, State: fleet.QuarantineStateHeld, Reason: "agent edge2 was lost while running it", Agent: "ag_02", AgentName: "edge2", Since: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Until: &until},
	}}
	e := start(t, openEmbedded(t), func(c *Config) { c.Quarantine = q })
	for _, name := range []string{"a", "b"} {
		status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: name}, codePart(hello))
		wantData[nameItem](t, status, body, 201)
	}
	status, body := e.do(req{method: "GET", path: "/v1/admin/quarantine"})
	got := wantData[[]fleet.QuarantineInfo](t, status, body, 200)
	if len(got) != 2 || got[0].Digest != d || strings.Join(got[0].Functions, ",") != "_/a,_/b" || got[1].Functions == nil || len(got[1].Functions) != 0 ||
		got[1].State != "held" || got[1].Until == nil || !got[1].Until.Equal(until) {
		t.Fatalf("GET /v1/admin/quarantine = %s", body)
	}

	status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "mallory"}})
	mallory := wantData[newSubject](t, status, body, 201)
	for _, r := range []req{
		{method: "GET", path: "/v1/admin/quarantine", token: "Bearer " + mallory.Token},
		{method: "DELETE", path: "/v1/admin/quarantine/" + d, token: "Bearer " + mallory.Token},
	} {
		status, body = e.do(r)
		wantError(t, status, body, 403, "admin")
	}
	status, body = e.do(req{method: "DELETE", path: "/v1/admin/quarantine/sha256:XYZ", bad: true})
	wantError(t, status, body, 400, "Invalid digest")
	status, body = e.do(req{method: "DELETE", path: "/v1/admin/quarantine/" + d})
	if status != 204 {
		t.Fatalf("release: %d %s", status, body)
	}
	status, body = e.do(req{method: "DELETE", path: "/v1/admin/quarantine/" + d})
	wantError(t, status, body, 404, "not found")
	if list, _ := q.ListQuarantine(context.Background()); len(list) != 1 || list[0].Digest != other {
		t.Fatalf("after the release: %+v", list)
	}

	// A controller without agents has no quarantine to manage.
	bare := start(t, openEmbedded(t))
	status, body = bare.do(req{method: "GET", path: "/v1/admin/quarantine"})
	wantError(t, status, body, 503, "no agents")
}

// TestInvokeInputLimit: args over the input limit (the configured one, or
// the agents' default) are 413 before the invoker is called; at the limit
// they reach it.
func TestInvokeInputLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit int // 0: the default
	}{{"default", 0}, {"configured", 100}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := &fakeInvoker{out: json.RawMessage(`{}`)}
			e := start(t, openEmbedded(t), func(c *Config) { c.Invoker = inv; c.MaxInvokeInputBytes = tc.limit })
			status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "f"}, codePart(fixture(t, "hello_c.wasm")))
			wantData[nameItem](t, status, body, 201)
			limit := tc.limit
			if limit == 0 {
				limit = runtime.DefaultLimits.InputBytes
			}
			args := func(n int) []byte { // compact args of exactly n bytes
				return []byte(`{"args": {"s": "` + strings.Repeat("x", n-len(`{"s":""}`)) + `"}}`)
			}
			status, body = e.do(req{method: "POST", path: "/v1/fn/_/f", contentType: "application/json", body: args(limit + 1)})
			wantError(t, status, body, 413, "input limit")
			if len(inv.reqs) != 0 {
				t.Fatal("args over the limit reached the invoker")
			}
			status, body = e.do(req{method: "POST", path: "/v1/fn/_/f", contentType: "application/json", body: args(limit)})
			wantData[map[string]any](t, status, body, 200)
			if len(inv.reqs) != 1 || len(inv.reqs[0].Args) != limit {
				t.Fatalf("args at the limit: %d requests", len(inv.reqs))
			}
		})
	}
}
