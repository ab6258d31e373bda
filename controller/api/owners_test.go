package api

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/wispfn/wisp/controller/store"
)

// owners is the state TestSubjectsOwnTheirModules builds: subjects alice
// and bob (their "Bearer ..." headers), alice's module, function, script
// and activation, and an activation of the admin's default module.
type owners struct {
	e                  *env
	alice, bob         string
	aliceAct, adminAct string
	hello              []byte
}

const aliceApp = "- default:\n    - workers: \"*\"\n"

// as sends r with the token of who ("" is the admin).
func (o *owners) as(who string, r req) (int, []byte) {
	o.e.t.Helper()
	r.token = who
	return o.e.do(r)
}

func (o *owners) uploadAs(who, method, path string, parts ...part) (int, []byte) {
	o.e.t.Helper()
	body, ct := multipartBody(o.e.t, parts...)
	return o.as(who, req{method: method, path: path, body: body, contentType: ct})
}

func (o *owners) jsonAs(who, method, path string, v any) (int, []byte) {
	o.e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		o.e.t.Fatal(err)
	}
	return o.as(who, req{method: method, path: path, body: b, contentType: "application/json"})
}

// hidden checks that bob's request about alice's thing (send(name) with
// name = theirs) answers 404 with exactly the body of the same request
// about a name that does not exist (missing), but for the name: so that
// nothing tells bob the thing exists.
func (o *owners) hidden(t *testing.T, theirs, missing string, send func(name string) (int, []byte)) {
	t.Helper()
	status, body := send(theirs)
	wantError(t, status, body, 404)
	mStatus, mBody := send(missing)
	wantError(t, mStatus, mBody, 404)
	if got, want := string(body), strings.ReplaceAll(string(mBody), missing, theirs); got != want {
		t.Fatalf("another's %s answers %s, a missing one %s: they differ", theirs, body, mBody)
	}
}

// names lists the names GET path answers who.
func (o *owners) names(t *testing.T, who, path string) []string {
	t.Helper()
	status, body := o.as(who, req{method: "GET", path: path})
	var out []string
	for _, n := range wantData[[]nameItem](t, status, body, 200) {
		out = append(out, n.Name)
	}
	return out
}

// activationIDs lists the activations GET path answers who.
func (o *owners) activationIDs(t *testing.T, who, path string) []string {
	t.Helper()
	status, body := o.as(who, req{method: "GET", path: path})
	var out []string
	for _, a := range wantData[[]activationInfo](t, status, body, 200) {
		out = append(out, a.ID)
	}
	return out
}

func wantHas(t *testing.T, what string, got []string, has, hasNot []string) {
	t.Helper()
	for _, h := range has {
		if !slices.Contains(got, h) {
			t.Errorf("%s = %v: want %s in it", what, got, h)
		}
	}
	for _, h := range hasNot {
		if slices.Contains(got, h) {
			t.Errorf("%s = %v: %s must not be in it", what, got, h)
		}
	}
}

// probeHoldsNothing: a health probe answers the same to anyone, with no
// token or any subject's, and names no module.
func probeHoldsNothing(t *testing.T, o *owners, path string) {
	t.Helper()
	for _, who := range []string{o.bob, o.alice, ""} {
		status, body := o.as(who, req{method: "GET", path: path})
		if status != 200 || string(body) != "ok\n" {
			t.Fatalf("%s as %q: %d %q", path, who, status, body)
		}
	}
	if status, body := o.e.do(req{method: "GET", path: path, token: noToken}); status != 200 || string(body) != "ok\n" {
		t.Fatalf("%s without a token: %d %q", path, status, body)
	}
}

// ownerCases has one case per route of openapi/openapi.yaml ("METHOD
// path" as the spec writes it), run in this order against one server: bob
// tries alice's things and gets nothing, alice and the admin get them.
// The deletes come last.
var ownerCases = []struct {
	route string
	run   func(t *testing.T, o *owners)
}{
	{"GET /v1/", func(t *testing.T, o *owners) {
		status, _ := o.as(o.bob, req{method: "GET", path: "/v1/", token: noToken})
		if status != 200 {
			t.Fatalf("banner: %d", status)
		}
	}}, // public, holds no subject's data
	{"GET /healthz", func(t *testing.T, o *owners) { probeHoldsNothing(t, o, "/healthz") }},
	{"GET /readyz", func(t *testing.T, o *owners) { probeHoldsNothing(t, o, "/readyz") }},
	{"GET /metrics", func(t *testing.T, o *owners) {
		if status, _ := o.as(o.bob, req{method: "GET", path: "/metrics", bad: true}); status != 403 {
			t.Fatalf("metrics for a subject: %d, want 403", status)
		}
		status, body := o.as("", req{method: "GET", path: "/metrics"})
		if status != 200 || strings.Contains(string(body), "a_mod") {
			t.Fatalf("metrics: %d, or names a module", status)
		}
	}}, // the admin's; counts by route pattern, never by module name
	{"GET /v1/fn", func(t *testing.T, o *owners) {
		wantHas(t, "bob's modules", o.names(t, o.bob, "/v1/fn"), []string{"b_mod"}, []string{"a_mod", store.DefaultModule})
		wantHas(t, "alice's modules", o.names(t, o.alice, "/v1/fn"), []string{"a_mod"}, []string{"b_mod", store.DefaultModule})
		wantHas(t, "the admin's modules", o.names(t, "", "/v1/fn"), []string{"a_mod", "b_mod", store.DefaultModule}, nil)
	}},
	{"POST /v1/fn", func(t *testing.T, o *owners) {
		// Module names are one namespace: taking alice's is refused
		// (409, which says the name is in use and nothing else).
		status, body := o.jsonAs(o.bob, "POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "a_mod"}})
		wantError(t, status, body, 409, "Module a_mod already exists")
	}},
	{"GET /v1/fn/{mod}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) { return o.as(o.bob, req{method: "GET", path: "/v1/fn/" + m}) })
		o.hidden(t, store.DefaultModule, "nope_mod", func(m string) (int, []byte) { return o.as(o.bob, req{method: "GET", path: "/v1/fn/" + m}) })
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "GET", path: "/v1/fn/a_mod"})
			if m := wantData[moduleInfo](t, status, body, 200); len(m.Functions) != 1 || m.Functions[0].Name != "a_fn" {
				t.Fatalf("a_mod = %s", body)
			}
		}
	}},
	{"PUT /v1/fn/{mod}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.jsonAs(o.bob, "PUT", "/v1/fn/"+m, map[string]any{"module": map[string]string{"name": "stolen"}})
		})
		status, body := o.jsonAs(o.alice, "PUT", "/v1/fn/a_mod", map[string]any{"module": map[string]string{"name": "a_mod2"}})
		wantData[nameItem](t, status, body, 200)
		status, body = o.jsonAs("", "PUT", "/v1/fn/a_mod2", map[string]any{"module": map[string]string{"name": "a_mod"}})
		wantData[nameItem](t, status, body, 200)
	}},
	{"POST /v1/fn/{mod}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.uploadAs(o.bob, "POST", "/v1/fn/"+m, part{name: "name", value: "planted"}, codePart(o.hello))
		})
		o.hidden(t, store.DefaultModule, "nope_mod", func(m string) (int, []byte) {
			return o.uploadAs(o.bob, "POST", "/v1/fn/"+m, part{name: "name", value: "planted"}, codePart(o.hello))
		})
		status, body := o.uploadAs("", "POST", "/v1/fn/a_mod", part{name: "name", value: "by_admin"}, codePart(o.hello))
		wantData[nameItem](t, status, body, 201)
	}},
	{"GET /v1/fn/{mod}/{fn}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) { return o.as(o.bob, req{method: "GET", path: "/v1/fn/" + m + "/a_fn"}) })
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "GET", path: "/v1/fn/a_mod/a_fn"})
			wantData[functionInfo](t, status, body, 200)
		}
	}},
	{"PUT /v1/fn/{mod}/{fn}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.uploadAs(o.bob, "PUT", "/v1/fn/"+m+"/a_fn", codePart(o.hello))
		})
		for _, who := range []string{o.alice, ""} {
			status, body := o.uploadAs(who, "PUT", "/v1/fn/a_mod/a_fn", codePart(o.hello))
			wantData[nameItem](t, status, body, 200)
		}
	}},
	{"POST /v1/fn/{mod}/{fn}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.jsonAs(o.bob, "POST", "/v1/fn/"+m+"/a_fn", map[string]any{"args": map[string]any{}})
		})
		// alice's script, named in bob's call of his own function.
		o.hidden(t, "a_script", "nope_script", func(sc string) (int, []byte) {
			return o.jsonAs(o.bob, "POST", "/v1/fn/b_mod/b_fn", map[string]any{"scheduling": map[string]string{"language": "app", "script": sc}})
		})
		for _, who := range []string{o.alice, ""} { // they reach the dispatcher: no agents here
			status, body := o.jsonAs(who, "POST", "/v1/fn/a_mod/a_fn", map[string]any{"scheduling": map[string]string{"language": "app", "script": "a_script"}})
			wantError(t, status, body, 503, "No worker available")
		}
	}},
	{"GET /v1/fn/{mod}/{fn}/versions", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.as(o.bob, req{method: "GET", path: "/v1/fn/" + m + "/a_fn/versions"})
		})
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "GET", path: "/v1/fn/a_mod/a_fn/versions"})
			if vs := wantData[[]versionInfo](t, status, body, 200); len(vs) < 2 {
				t.Fatalf("versions of a_fn after two updates: %s", body)
			}
		}
	}},
	{"POST /v1/fn/{mod}/{fn}/rollback", func(t *testing.T, o *owners) {
		before, err := o.e.st.FunctionVersions(context.Background(), "a_mod", "a_fn")
		if err != nil {
			t.Fatal(err)
		}
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.as(o.bob, req{method: "POST", path: "/v1/fn/" + m + "/a_fn/rollback"})
		})
		if after, _ := o.e.st.FunctionVersions(context.Background(), "a_mod", "a_fn"); len(after) != len(before) || after[0].Number != before[0].Number {
			t.Fatalf("bob's refused rollback made a version")
		}
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "POST", path: "/v1/fn/a_mod/a_fn/rollback"})
			wantData[rollbackResult](t, status, body, 200)
		}
	}},
	{"GET /v1/scripts/app", func(t *testing.T, o *owners) {
		wantHas(t, "bob's scripts", o.names(t, o.bob, "/v1/scripts/app"), nil, []string{"a_script"})
		wantHas(t, "alice's scripts", o.names(t, o.alice, "/v1/scripts/app"), []string{"a_script"}, nil)
		wantHas(t, "the admin's scripts", o.names(t, "", "/v1/scripts/app"), []string{"a_script"}, nil)
	}},
	{"POST /v1/scripts/app", func(t *testing.T, o *owners) {
		status, body := o.uploadAs(o.bob, "POST", "/v1/scripts/app", part{name: "name", value: "a_script"}, part{name: "file", value: "- x:\n    - workers: \"*\"\n", file: true})
		wantError(t, status, body, 409, "Script a_script already exists") // one namespace, like modules
		status, body = o.as(o.alice, req{method: "GET", path: "/v1/scripts/app/a_script"})
		if sc := wantData[scriptInfo](t, status, body, 200); sc.Source != aliceApp {
			t.Fatalf("alice's script after bob's try: %s", body)
		}
	}},
	{"GET /v1/scripts/app/{name}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_script", "nope_script", func(sc string) (int, []byte) {
			return o.as(o.bob, req{method: "GET", path: "/v1/scripts/app/" + sc})
		})
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "GET", path: "/v1/scripts/app/a_script"})
			wantData[scriptInfo](t, status, body, 200)
		}
	}},
	{"PUT /v1/secrets/{mod}/{name}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.jsonAs(o.bob, "PUT", "/v1/secrets/"+m+"/API_KEY", map[string]string{"value": "bobs"})
		})
		for _, who := range []string{o.alice, ""} {
			status, body := o.jsonAs(who, "PUT", "/v1/secrets/a_mod/API_KEY", map[string]string{"value": "alices"})
			wantData[secretInfo](t, status, body, 200)
		}
	}},
	{"GET /v1/secrets/{mod}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.as(o.bob, req{method: "GET", path: "/v1/secrets/" + m})
		})
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "GET", path: "/v1/secrets/a_mod"})
			if got := wantData[[]secretInfo](t, status, body, 200); len(got) != 1 || got[0].Name != "API_KEY" || strings.Contains(string(body), "alices") {
				t.Fatalf("alice's secrets: %s", body)
			}
		}
	}},
	{"DELETE /v1/secrets/{mod}/{name}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) {
			return o.as(o.bob, req{method: "DELETE", path: "/v1/secrets/" + m + "/API_KEY"})
		})
		status, body := o.as(o.alice, req{method: "DELETE", path: "/v1/secrets/a_mod/API_KEY"})
		if status != 204 {
			t.Fatalf("alice deletes her secret: %d %s", status, body)
		}
		status, body = o.as("", req{method: "DELETE", path: "/v1/secrets/a_mod/API_KEY"})
		wantError(t, status, body, 404, "Secret API_KEY not found in module a_mod")
	}},
	{"GET /v1/activations", func(t *testing.T, o *owners) {
		for _, q := range []string{"", "?module=a_mod", "?module=a_mod&function=a_fn", "?function=a_fn"} {
			wantHas(t, "bob's activations"+q, o.activationIDs(t, o.bob, "/v1/activations"+q), nil, []string{o.aliceAct, o.adminAct})
			wantHas(t, "alice's activations"+q, o.activationIDs(t, o.alice, "/v1/activations"+q), []string{o.aliceAct}, []string{o.adminAct})
			wantHas(t, "the admin's activations"+q, o.activationIDs(t, "", "/v1/activations"+q), []string{o.aliceAct}, nil)
		}
		wantHas(t, "the admin's activations", o.activationIDs(t, "", "/v1/activations"), []string{o.adminAct}, nil)
		wantHas(t, "alice's activations of _", o.activationIDs(t, o.alice, "/v1/activations?module=_"), nil, []string{o.adminAct})
	}},
	{"GET /v1/activations/{id}", func(t *testing.T, o *owners) {
		missing := "0100000000000000000000AB09"
		o.hidden(t, o.aliceAct, missing, func(id string) (int, []byte) { return o.as(o.bob, req{method: "GET", path: "/v1/activations/" + id}) })
		o.hidden(t, o.adminAct, missing, func(id string) (int, []byte) { return o.as(o.alice, req{method: "GET", path: "/v1/activations/" + id}) })
		for _, who := range []string{o.alice, ""} {
			status, body := o.as(who, req{method: "GET", path: "/v1/activations/" + o.aliceAct})
			if a := wantData[activationInfo](t, status, body, 200); a.ID != o.aliceAct {
				t.Fatalf("activation = %s", body)
			}
		}
	}},
	// Admin routes: a subject is refused whatever it names.
	{"GET /v1/agents", adminOnly("GET", "/v1/agents")},
	{"GET /v1/admin/subjects", adminOnly("GET", "/v1/admin/subjects")},
	{"POST /v1/admin/subjects", adminOnly("POST", "/v1/admin/subjects")},
	{"POST /v1/admin/tokens", adminOnly("POST", "/v1/admin/tokens")},
	{"GET /v1/admin/tokens", adminOnly("GET", "/v1/admin/tokens")},
	{"DELETE /v1/admin/tokens/{id}", adminOnly("DELETE", "/v1/admin/tokens/jt_00000000")},
	{"GET /v1/admin/agents/{id}", adminOnly("GET", "/v1/admin/agents/ag_0000000000000000")},
	{"DELETE /v1/admin/agents/{id}", adminOnly("DELETE", "/v1/admin/agents/ag_0000000000000000")},
	{"PUT /v1/admin/agents/{id}/cordon", adminOnly("PUT", "/v1/admin/agents/ag_0000000000000000/cordon")},
	{"DELETE /v1/admin/agents/{id}/cordon", adminOnly("DELETE", "/v1/admin/agents/ag_0000000000000000/cordon")},
	{"POST /v1/admin/agents/{id}/drain", adminOnly("POST", "/v1/admin/agents/ag_0000000000000000/drain")},
	{"PUT /v1/admin/agents/{id}/cap", adminOnly("PUT", "/v1/admin/agents/ag_0000000000000000/cap")},
	{"POST /v1/admin/agents/{id}/labels", adminOnly("POST", "/v1/admin/agents/ag_0000000000000000/labels")},
	{"GET /v1/admin/quarantine", adminOnly("GET", "/v1/admin/quarantine")},
	{"DELETE /v1/admin/quarantine/{digest}", adminOnly("DELETE", "/v1/admin/quarantine/sha256:"+strings.Repeat("0", 64))},
	{"POST /v1/admin/subjects/{name}/rotate", func(t *testing.T, o *owners) {
		adminOnly("POST", "/v1/admin/subjects/alice/rotate")(t, o)
		status, body := o.as("", req{method: "POST", path: "/v1/admin/subjects/admin/rotate"})
		wantError(t, status, body, 400, "is an admin")
		status, body = o.as("", req{method: "POST", path: "/v1/admin/subjects/nobody/rotate"})
		wantError(t, status, body, 404, "Subject nobody not found")
		status, body = o.as("", req{method: "POST", path: "/v1/admin/subjects/bob/rotate"})
		fresh := wantData[newSubject](t, status, body, 200)
		if fresh.Name != "bob" || !strings.HasPrefix(fresh.Token, "wisp_") {
			t.Fatalf("rotate = %s", body)
		}
		status, body = o.as(o.bob, req{method: "GET", path: "/v1/fn"})
		wantError(t, status, body, 401)
		o.bob = "Bearer " + fresh.Token
		wantHas(t, "bob's modules with his new token", o.names(t, o.bob, "/v1/fn"), []string{"b_mod"}, nil)
	}},
	{"DELETE /v1/fn/{mod}/{fn}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) { return o.as(o.bob, req{method: "DELETE", path: "/v1/fn/" + m + "/a_fn"}) })
		status, body := o.as(o.alice, req{method: "GET", path: "/v1/fn/a_mod/a_fn"})
		wantData[functionInfo](t, status, body, 200)
		status, _ = o.as("", req{method: "DELETE", path: "/v1/fn/a_mod/by_admin"})
		if status != http.StatusNoContent {
			t.Fatalf("the admin's delete of a_mod/by_admin: %d", status)
		}
		status, _ = o.as(o.alice, req{method: "DELETE", path: "/v1/fn/a_mod/a_fn"})
		if status != http.StatusNoContent {
			t.Fatalf("alice's delete of a_mod/a_fn: %d", status)
		}
	}},
	{"DELETE /v1/admin/subjects/{name}", func(t *testing.T, o *owners) {
		adminOnly("DELETE", "/v1/admin/subjects/alice")(t, o)
		status, body := o.as("", req{method: "DELETE", path: "/v1/admin/subjects/alice"})
		wantError(t, status, body, 409, "Subject alice owns modules")
		status, body = o.as("", req{method: "DELETE", path: "/v1/admin/subjects/admin"})
		wantError(t, status, body, 400, "is an admin")
	}},
	{"DELETE /v1/fn/{mod}", func(t *testing.T, o *owners) {
		o.hidden(t, "a_mod", "nope_mod", func(m string) (int, []byte) { return o.as(o.bob, req{method: "DELETE", path: "/v1/fn/" + m}) })
		status, body := o.as(o.bob, req{method: "DELETE", path: "/v1/fn/" + store.DefaultModule})
		wantError(t, status, body, 404)
		status, _ = o.as("", req{method: "DELETE", path: "/v1/fn/a_mod"})
		if status != http.StatusNoContent {
			t.Fatalf("the admin's delete of a_mod: %d", status)
		}
		// alice owns nothing but a script and an activation now: she can go.
		status, _ = o.as("", req{method: "DELETE", path: "/v1/admin/subjects/alice"})
		if status != http.StatusNoContent {
			t.Fatalf("delete alice: %d", status)
		}
		status, body = o.as(o.alice, req{method: "GET", path: "/v1/fn"})
		wantError(t, status, body, 401)
		// A new alice gets none of the old one's script or activations.
		status, body = o.jsonAs("", "POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "alice"}})
		newAlice := "Bearer " + wantData[newSubject](t, status, body, 201).Token
		wantHas(t, "the new alice's activations", o.activationIDs(t, newAlice, "/v1/activations"), nil, []string{o.aliceAct})
		status, body = o.as(newAlice, req{method: "GET", path: "/v1/scripts/app/a_script"})
		wantError(t, status, body, 404)
		wantHas(t, "the admin's activations", o.activationIDs(t, "", "/v1/activations"), []string{o.aliceAct}, nil)
	}},
}

// adminOnly is the case of an admin route: a subject gets 403.
func adminOnly(method, path string) func(t *testing.T, o *owners) {
	return func(t *testing.T, o *owners) {
		t.Helper()
		status, body := o.as(o.bob, req{method: method, path: path, contentType: "application/json", body: []byte(`{}`), bad: true})
		wantError(t, status, body, 403)
	}
}

// TestSubjectsOwnTheirModules runs ownerCases against both stores, and
// fails for a route of openapi/openapi.yaml without a case.
func TestSubjectsOwnTheirModules(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile(filepath.Join("..", "..", "openapi", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range ownerCases {
		if have[c.route] {
			t.Errorf("two cases for %s", c.route)
		}
		have[c.route] = true
	}
	spec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			route := method + " " + path
			spec[route] = true
			if !have[route] {
				t.Errorf("%s is in openapi.yaml but has no case in ownerCases: say what a subject may do there", route)
			}
		}
	}
	for route := range have {
		if !spec[route] {
			t.Errorf("ownerCases has %s, which openapi.yaml does not", route)
		}
	}
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			o := setUpOwners(t, start(t, ts.open(t)))
			for _, c := range ownerCases {
				if !t.Run(c.route, func(t *testing.T) { o.e.t = t; c.run(t, o) }) {
					return // later cases build on earlier ones
				}
			}
		})
	}
}

func setUpOwners(t *testing.T, e *env) *owners {
	o := &owners{e: e, hello: fixture(t, "hello_c.wasm")}
	for _, name := range []string{"alice", "bob"} {
		status, body := e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": name}})
		tok := "Bearer " + wantData[newSubject](t, status, body, 201).Token
		if name == "alice" {
			o.alice = tok
		} else {
			o.bob = tok
		}
	}
	for who, m := range map[string]string{o.alice: "a", o.bob: "b"} {
		status, body := o.jsonAs(who, "POST", "/v1/fn", map[string]any{"module": map[string]string{"name": m + "_mod"}})
		wantData[nameItem](t, status, body, 201)
		status, body = o.uploadAs(who, "POST", "/v1/fn/"+m+"_mod", part{name: "name", value: m + "_fn"}, codePart(o.hello))
		wantData[nameItem](t, status, body, 201)
	}
	status, body := o.uploadAs(o.alice, "POST", "/v1/scripts/app", part{name: "name", value: "a_script"}, part{name: "file", value: aliceApp, file: true})
	wantData[nameItem](t, status, body, 201)
	status, body = o.uploadAs("", "POST", "/v1/fn/_", part{name: "name", value: "admin_fn"}, codePart(o.hello))
	wantData[nameItem](t, status, body, 201)

	// Activations as the fleet records them: the store gives each its
	// module's owner.
	ctx := context.Background()
	// Ids of 26 characters, as the fleet's (the API checks only their length).
	o.aliceAct, o.adminAct = "0100000000000000000000AB01", "0100000000000000000000AB02"
	for id, fn := range map[string][2]string{o.aliceAct: {"a_mod", "a_fn"}, o.adminAct: {store.DefaultModule, "admin_fn"}} {
		a := store.Activation{ID: id, Module: fn[0], Function: fn[1], Digest: "sha256:" + strings.Repeat("0", 64), Source: "api",
			Output: []byte(`{}`), Started: time.Now()}
		if _, err := e.st.RecordActivation(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
	}
	return o
}
