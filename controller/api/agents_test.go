package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/store"
)

// TestAgentControl: the admin cordons, uncordons, labels, caps, drains and
// removes an agent through the real fleet on both stores; what is set is
// kept in the store; bad ids, labels and bodies are 400, unknown agents
// 404, subjects 403, and a controller without agents 503.
func TestAgentControl(t *testing.T) {
	t.Parallel()
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			st := ts.open(t)
			id, err := fleet.LoadOrCreateIdentity(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			fl, err := fleet.New(fleet.Config{Identity: id, Store: st, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			e := start(t, st, func(c *Config) { c.AgentControl = fl })
			ctx := t.Context()
			hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
			if _, err := st.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0a", SecretHash: hash("join"), Uses: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.JoinAgent(ctx, hash("join"), store.Agent{ID: "ag_01", Name: "edge", CredentialHash: hash("cred"),
				Labels: []string{"zone=a"}, JoinMemBytes: 4 << 30}); err != nil {
				t.Fatal(err)
			}
			stored := func() store.AgentControl {
				a, err := st.AgentByID(ctx, "ag_01")
				if err != nil {
					t.Fatal(err)
				}
				return a.Control
			}

			status, body := e.do(req{method: "GET", path: "/v1/admin/agents/ag_01"})
			got := wantData[fleet.ControlState](t, status, body, 200)
			if got.ID != "ag_01" || got.Name != "edge" || got.Cordoned || got.Connected || len(got.Labels) != 0 || got.JoinMemBytes != 4<<30 {
				t.Fatalf("GET = %s", body)
			}

			status, body = e.do(req{method: "PUT", path: "/v1/admin/agents/ag_01/cordon"})
			if got := wantData[fleet.ControlState](t, status, body, 200); !got.Cordoned || !stored().Cordoned {
				t.Fatalf("cordon = %s, stored %+v", body, stored())
			}
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/agents/ag_01/cordon"})
			if got := wantData[fleet.ControlState](t, status, body, 200); got.Cordoned || stored().Cordoned {
				t.Fatalf("uncordon = %s", body)
			}

			status, body = e.json("POST", "/v1/admin/agents/ag_01/labels", labelsBody{Set: []string{"zone=b", "tag=gpu", "zone=c"}})
			if got := wantData[fleet.ControlState](t, status, body, 200); !slices.Equal(got.Labels, []string{"tag=gpu", "zone=c"}) {
				t.Fatalf("labels = %s", body)
			}
			status, body = e.json("POST", "/v1/admin/agents/ag_01/labels", labelsBody{Set: []string{"tag=cpu"}, Remove: []string{"zone"}})
			if got := wantData[fleet.ControlState](t, status, body, 200); !slices.Equal(got.Labels, []string{"tag=cpu"}) || !slices.Equal(stored().Labels, []string{"tag=cpu"}) {
				t.Fatalf("labels after remove = %s", body)
			}
			for _, bad := range []labelsBody{{Set: []string{"novalue"}}, {Set: []string{"=v"}}, {Set: []string{"k=a b"}}, {Remove: []string{"k=v"}}, {Remove: []string{""}}} {
				b, _ := json.Marshal(bad)
				status, body = e.do(req{method: "POST", path: "/v1/admin/agents/ag_01/labels", body: b, contentType: "application/json", bad: true})
				wantError(t, status, body, 400, "label")
			}
			if !slices.Equal(stored().Labels, []string{"tag=cpu"}) {
				t.Fatalf("refused labels changed the agent: %v", stored().Labels)
			}

			status, body = e.json("PUT", "/v1/admin/agents/ag_01/cap", map[string]uint64{"mem_cap_bytes": 64 << 20})
			if got := wantData[fleet.ControlState](t, status, body, 200); got.MemCapBytes != 64<<20 || stored().MemCapBytes != 64<<20 {
				t.Fatalf("cap = %s", body)
			}
			status, body = e.do(req{method: "PUT", path: "/v1/admin/agents/ag_01/cap", body: []byte(`{}`), contentType: "application/json", bad: true})
			wantError(t, status, body, 400, "mem_cap_bytes")
			status, body = e.do(req{method: "PUT", path: "/v1/admin/agents/ag_01/cap", body: []byte(`{"mem_cap_bytes":-1}`), contentType: "application/json", bad: true})
			wantError(t, status, body, 400)

			// A disconnected agent drains at once.
			status, body = e.do(req{method: "POST", path: "/v1/admin/agents/ag_01/drain?wait=1s"})
			if got := wantData[fleet.ControlState](t, status, body, 200); !got.Cordoned || got.InFlight != 0 {
				t.Fatalf("drain = %s", body)
			}
			status, body = e.do(req{method: "POST", path: "/v1/admin/agents/ag_01/drain?wait=2m", bad: true})
			wantError(t, status, body, 400, "wait")
			if c := stored(); !c.Cordoned || c.MemCapBytes != 64<<20 || !slices.Equal(c.Labels, []string{"tag=cpu"}) {
				t.Fatalf("stored control after all = %+v", c)
			}

			status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "carol"}})
			carol := wantData[newSubject](t, status, body, 201)
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/agents/ag_01", token: "Bearer " + carol.Token})
			wantError(t, status, body, 403, "admin")
			status, body = e.do(req{method: "PUT", path: "/v1/admin/agents/ag_01/cordon", token: "Bearer " + carol.Token})
			wantError(t, status, body, 403, "admin")

			status, body = e.do(req{method: "GET", path: "/v1/admin/agents/nope", bad: true})
			wantError(t, status, body, 400, "agent id")
			status, body = e.do(req{method: "PUT", path: "/v1/admin/agents/ag_ff/cordon"})
			wantError(t, status, body, 404, "ag_ff")

			status, body = e.do(req{method: "DELETE", path: "/v1/admin/agents/ag_01"})
			if status != 204 {
				t.Fatalf("remove: %d %s", status, body)
			}
			if _, err := st.AgentByID(ctx, "ag_01"); err == nil {
				t.Fatal("the removed agent is still in the store")
			}
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/agents/ag_01"})
			wantError(t, status, body, 404, "ag_01")
			status, body = e.do(req{method: "GET", path: "/v1/admin/agents/ag_01"})
			wantError(t, status, body, 404, "ag_01")
		})
	}
	t.Run("no agents", func(t *testing.T) {
		t.Parallel()
		e := start(t, openEmbedded(t))
		status, body := e.do(req{method: "PUT", path: "/v1/admin/agents/ag_01/cordon"})
		wantError(t, status, body, 503)
	})
}

// fakeControl knows one agent, ag_01, and changes nothing.
type fakeControl struct{}

func (fakeControl) state(id string) (fleet.ControlState, error) {
	if id != "ag_01" {
		return fleet.ControlState{}, store.ErrNotFound
	}
	return fleet.ControlState{ID: id, Name: "edge", Labels: []string{}}, nil
}

func (f fakeControl) AgentControl(_ context.Context, id string) (fleet.ControlState, error) {
	return f.state(id)
}

func (f fakeControl) Control(_ context.Context, id string, change func(*store.AgentControl)) (fleet.ControlState, error) {
	return f.state(id)
}

func (f fakeControl) Drain(_ context.Context, id string, _ time.Duration) (fleet.ControlState, error) {
	return f.state(id)
}

func (f fakeControl) Remove(_ context.Context, id string) error {
	_, err := f.state(id)
	return err
}

// reachAgentControl sends one request to each agent control route.
func reachAgentControl(t *testing.T, e *env) {
	t.Helper()
	for _, r := range []req{
		{method: "GET", path: "/v1/admin/agents/ag_01"},
		{method: "PUT", path: "/v1/admin/agents/ag_01/cordon"},
		{method: "DELETE", path: "/v1/admin/agents/ag_01/cordon"},
		{method: "POST", path: "/v1/admin/agents/ag_01/drain"},
		{method: "POST", path: "/v1/admin/agents/ag_01/labels", body: []byte(`{"set":["k=v"]}`), contentType: "application/json"},
		{method: "PUT", path: "/v1/admin/agents/ag_01/cap", body: []byte(`{"mem_cap_bytes":0}`), contentType: "application/json"},
	} {
		status, body := e.do(r)
		wantData[fleet.ControlState](t, status, body, 200)
	}
	if status, body := e.do(req{method: "DELETE", path: "/v1/admin/agents/ag_01"}); status != 204 {
		t.Fatalf("remove: %d %s", status, body)
	}
}
