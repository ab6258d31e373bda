package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testwait"
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

type fakeTokens struct {
	ttl  time.Duration
	uses int
}

func (f *fakeTokens) CreateJoinToken(_ context.Context, ttl time.Duration, uses int) (fleet.JoinTokenInfo, error) {
	f.ttl, f.uses = ttl, uses
	e := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return fleet.JoinTokenInfo{ID: "jt_01ab", Token: "wispjoin1." + strings.Repeat("A", 43) + ".c2VjcmV0", Expires: &e, Uses: uses}, nil
}

type fakeAgents []fleet.AgentInfo

func (f fakeAgents) Agents(context.Context) ([]fleet.AgentInfo, error) { return f, nil }

func TestDistributionAndAgents(t *testing.T) {
	t.Parallel()
	dist := &recordingDist{}
	agents := fakeAgents{{ID: "ag_0123", Name: "edge1", Connected: true, Controllers: []string{"ctl-a"}, OS: "linux", Arch: "arm64",
		Engine: "compiler", Labels: []string{"zone=a"}, LastSeen: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}}
	tokens := &fakeTokens{}
	// One version kept: an update leaves no earlier version keeping the old
	// code, which TestVersionsAndRollback covers.
	e := start(t, openEmbedded(t), func(c *Config) {
		c.Distributor = dist
		c.Agents = agents
		c.JoinTokens = tokens
		c.FunctionVersions = 1
	})

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
	if tokens.ttl != 24*time.Hour || tokens.uses != 1 || tok.Uses != 1 || tok.Expires == nil || !strings.HasPrefix(tok.Token, "wispjoin1.") {
		t.Fatalf("token %+v ttl %v uses %d", tok, tokens.ttl, tokens.uses)
	}
	// No ttl: the Invoker's default (0 here); no uses: one.
	status, body = e.do(req{method: "POST", path: "/v1/admin/tokens"})
	if tok := wantData[fleet.JoinTokenInfo](t, status, body, 201); tok.Uses != 1 || tokens.ttl != 0 {
		t.Fatalf("no ttl: %+v", tok)
	}
	status, body = e.json("POST", "/v1/admin/tokens", map[string]any{"uses": 5})
	if tok := wantData[fleet.JoinTokenInfo](t, status, body, 201); tok.Uses != 5 || tokens.uses != 5 {
		t.Fatalf("uses 5: %+v", tok)
	}
	status, body = e.json("POST", "/v1/admin/tokens", map[string]string{"ttl": "soon"})
	wantError(t, status, body, 400, "ttl")
	for _, n := range []int{0, -1, fleet.MaxJoinTokenUses + 1} {
		status, body = e.do(req{method: "POST", path: "/v1/admin/tokens", body: fmt.Appendf(nil, `{"uses":%d}`, n), contentType: "application/json", bad: true})
		wantError(t, status, body, 400, "uses")
	}
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

// TestJoinTokenListRevoke: the admin lists join tokens with their state
// and never their secrets, and revokes one (204, then 404); a subject can
// do neither.
func TestJoinTokenListRevoke(t *testing.T) {
	t.Parallel()
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, ts.open(t))
			ctx := t.Context()
			hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
			mk := func(jt store.JoinToken) {
				if _, err := e.st.CreateJoinToken(ctx, jt); err != nil {
					t.Fatal(err)
				}
			}
			mk(store.JoinToken{ID: "jt_0a", SecretHash: hash("a"), Uses: 2, Expires: time.Now().Add(time.Hour)})
			mk(store.JoinToken{ID: "jt_0b", SecretHash: hash("b"), Uses: 1, Expires: time.Now().Add(time.Hour)})
			mk(store.JoinToken{ID: "jt_0c", SecretHash: hash("c"), Uses: 1, Expires: time.Now().Add(-time.Minute)})
			if _, err := e.st.JoinAgent(ctx, hash("b"), store.Agent{ID: "ag_01", Name: "edge", CredentialHash: hash("cred")}); err != nil {
				t.Fatal(err)
			}
			status, body := e.do(req{method: "GET", path: "/v1/admin/tokens"})
			list := wantData[[]JoinTokenState](t, status, body, 200)
			got := map[string]string{}
			for _, jt := range list {
				got[jt.ID] = fmt.Sprintf("%s %d/%d", jt.State, jt.Used, jt.Uses)
			}
			want := map[string]string{"jt_0a": "active 0/2", "jt_0b": "used 1/1", "jt_0c": "expired 0/1"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("tokens %v, want %v", got, want)
			}
			if strings.Contains(string(body), "secret") || strings.Contains(string(body), "hash") {
				t.Fatalf("the list shows secrets: %s", body)
			}
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/tokens/jt_0a"})
			if status != 204 {
				t.Fatalf("revoke: %d %s", status, body)
			}
			if _, err := e.st.JoinAgent(ctx, hash("a"), store.Agent{ID: "ag_02", Name: "edge", CredentialHash: hash("cred2")}); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("join with a revoked token: %v", err)
			}
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/tokens/jt_0a"})
			wantError(t, status, body, 404, "jt_0a")
			status, body = e.do(req{method: "DELETE", path: "/v1/admin/tokens/nope", bad: true})
			wantError(t, status, body, 400, "jt_")
			status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "bob"}})
			bob := wantData[newSubject](t, status, body, 201).Token
			for _, r := range []req{{method: "GET", path: "/v1/admin/tokens"}, {method: "DELETE", path: "/v1/admin/tokens/jt_0b"}} {
				r.token, r.bad = "Bearer "+bob, true
				status, body = e.do(r)
				wantError(t, status, body, 403, "admin")
			}
		})
	}
}
