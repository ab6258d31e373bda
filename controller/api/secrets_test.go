package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/sealbox"
)

// testRing seals the API tests' secrets.
var testRing = func() *sealbox.Ring {
	k, err := sealbox.NewKey(bytes.Repeat([]byte{42}, sealbox.KeySize))
	if err != nil {
		panic(err)
	}
	return sealbox.NewRing(k)
}()

const secretValue = "v4lue-NEVER-answered-91c3"

// TestSecrets: set, list, replace and delete a module's secrets through
// the REST API, on both stores; bad input is refused with 400/413/422
// and changes nothing; no answer ever holds a value.
func TestSecrets(t *testing.T) {
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, ts.open(t))
			var answers bytes.Buffer
			do := func(r req) (int, []byte) {
				t.Helper()
				status, body := e.do(r)
				answers.Write(body)
				return status, body
			}
			put := func(path, body string) (int, []byte) {
				return do(req{method: "PUT", path: path, body: []byte(body), contentType: "application/json"})
			}
			status, body := e.json("POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "m"}})
			wantData[nameItem](t, status, body, 201)

			status, body = put("/v1/secrets/m/API_KEY", `{"value":"`+secretValue+`"}`)
			first := wantData[secretInfo](t, status, body, 200)
			if first.Name != "API_KEY" || first.Updated.IsZero() {
				t.Fatalf("PUT: %s", body)
			}
			status, body = put("/v1/secrets/m/OTHER", `{"value":""}`)
			wantData[secretInfo](t, status, body, 200)
			status, body = put("/v1/secrets/m/API_KEY", `{"value":"`+secretValue+`2"}`)
			wantData[secretInfo](t, status, body, 200)
			status, body = do(req{method: "GET", path: "/v1/secrets/m"})
			list := wantData[[]secretInfo](t, status, body, 200)
			if len(list) != 2 || list[0].Name != "API_KEY" || list[1].Name != "OTHER" || list[0].Updated.Before(first.Updated) {
				t.Fatalf("GET: %s", body)
			}
			status, body = do(req{method: "GET", path: "/v1/secrets/_"})
			if got := wantData[[]secretInfo](t, status, body, 200); len(got) != 0 {
				t.Fatalf("GET of a module without secrets: %s", body)
			}

			before := listSecretNames(t, e)
			bad := []struct {
				name        string
				r           req
				status      int
				detailHolds string
			}{
				{"bad name", req{method: "PUT", path: "/v1/secrets/m/1BAD", body: []byte(`{"value":"x"}`), contentType: "application/json"}, 400, "Invalid secret name"},
				{"dash in the name", req{method: "PUT", path: "/v1/secrets/m/A-B", body: []byte(`{"value":"x"}`), contentType: "application/json"}, 400, "Invalid secret name"},
				{"long name", req{method: "PUT", path: "/v1/secrets/m/" + strings.Repeat("A", 129), body: []byte(`{"value":"x"}`), contentType: "application/json"}, 400, "Invalid secret name"},
				{"no value", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{}`), contentType: "application/json"}, 400, "Missing the value"},
				{"value not a string", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{"value":1}`), contentType: "application/json"}, 400, "value must be a string"},
				{"unknown key", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{"value":"x","extra":1}`), contentType: "application/json"}, 400, "unknown field"},
				{"empty body", req{method: "PUT", path: "/v1/secrets/m/K", contentType: "application/json"}, 400, "empty"},
				{"not JSON", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`value=x`), contentType: "text/plain"}, 400, "Content-Type"},
				{"bad escape", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{"value":"ab\qSECRETCHAR"}`), contentType: "application/json"}, 400, `Invalid JSON body: send {"value":"..."}`},
				{"NUL", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{"value":"a\u0000b"}`), contentType: "application/json"}, 400, "NUL"},
				{"too large", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{"value":"` + strings.Repeat("x", 16<<10+1) + `"}`), contentType: "application/json"}, 413, "the limit is 16384"},
				{"huge body", req{method: "PUT", path: "/v1/secrets/m/K", body: []byte(`{"value":"` + strings.Repeat("x", 200<<10) + `"}`), contentType: "application/json"}, 413, "over"},
				{"bad module", req{method: "PUT", path: "/v1/secrets/a.b/K", body: []byte(`{"value":"x"}`), contentType: "application/json"}, 422, ""},
				{"no module", req{method: "PUT", path: "/v1/secrets/nope/K", body: []byte(`{"value":"x"}`), contentType: "application/json"}, 404, "Module nope not found"},
				{"list no module", req{method: "GET", path: "/v1/secrets/nope"}, 404, "Module nope not found"},
				{"delete bad name", req{method: "DELETE", path: "/v1/secrets/m/1BAD"}, 400, "Invalid secret name"},
				{"delete missing", req{method: "DELETE", path: "/v1/secrets/m/NOPE"}, 404, "Secret NOPE not found in module m"},
				{"delete in no module", req{method: "DELETE", path: "/v1/secrets/nope/K"}, 404, "Module nope not found"},
				{"no token", req{method: "GET", path: "/v1/secrets/m", token: noToken}, 401, ""},
			}
			for _, c := range bad {
				t.Run(c.name, func(t *testing.T) {
					c.r.bad = true
					status, body := do(c.r)
					if c.detailHolds == "" {
						wantError(t, status, body, c.status)
					} else {
						wantError(t, status, body, c.status, c.detailHolds)
					}
				})
			}
			if after := listSecretNames(t, e); after != before {
				t.Fatalf("bad input changed the secrets: %s, then %s", before, after)
			}

			// A module with secrets is not renamed (values are sealed for its name).
			status, body = e.json("PUT", "/v1/fn/m", map[string]any{"module": map[string]string{"name": "m2"}})
			wantError(t, status, body, 409, "Module m has 2 secret(s)")

			status, body = do(req{method: "DELETE", path: "/v1/secrets/m/OTHER"})
			if status != 204 {
				t.Fatalf("DELETE: %d %s", status, body)
			}
			if got := listSecretNames(t, e); got != "API_KEY" {
				t.Fatalf("after DELETE: %s", got)
			}
			if strings.Contains(answers.String(), secretValue) {
				t.Fatal("an answer held a secret's value")
			}
		})
	}
}

func listSecretNames(t *testing.T, e *env) string {
	t.Helper()
	status, body := e.do(req{method: "GET", path: "/v1/secrets/m"})
	var names []string
	for _, s := range wantData[[]secretInfo](t, status, body, 200) {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

// TestSecretInUse: a secret a function's config names is not deleted
// (409 naming the functions); a config naming secrets the module lacks is
// refused with 400 naming them (checkSecretRefs, which function create
// and update call once config is parsed: MERGE(i14-config)).
func TestSecretInUse(t *testing.T) {
	st := openEmbedded(t)
	cs := configStore{Store: st, SecretStore: st.(store.SecretStore), secrets: map[string][]string{"m/user_a": {"API_KEY"}, "m/user_b": {"API_KEY"}}}
	e := start(t, cs)
	ctx := context.Background()
	if err := st.CreateModule(ctx, "m", ""); err != nil {
		t.Fatal(err)
	}
	status, body := e.do(req{method: "PUT", path: "/v1/secrets/m/API_KEY", body: []byte(`{"value":"x"}`), contentType: "application/json"})
	wantData[secretInfo](t, status, body, 200)

	if err := e.server.checkSecretRefs(ctx, "m", []string{"API_KEY"}); err != nil {
		t.Fatalf("checkSecretRefs of a held secret: %v", err)
	}
	err := e.server.checkSecretRefs(ctx, "m", []string{"API_KEY", "NOPE", "NADA"})
	if code, detail := statusOf(err); code != 400 || !strings.Contains(detail, "module m has no secret NOPE, NADA") {
		t.Fatalf("checkSecretRefs of missing secrets: %d %q", code, detail)
	}
	if code, _ := statusOf(e.server.checkSecretRefs(ctx, "nope", []string{"K"})); code != 400 {
		t.Fatalf("checkSecretRefs in no module: %d", code)
	}

	// A function whose config names the secret. The store keeps Config
	// once i14-config lands; until then a store double gives it.
	code := fixture(t, "hello_c.wasm")
	for _, name := range []string{"user_b", "user_a"} {
		fn := store.Function{Module: "m", Name: name, Digest: digestOf(code), ABI: "funless-v1",
			Spec: fnspec.Spec{Config: fnspec.Config{Secrets: []string{"API_KEY"}}}}
		if _, err := st.CreateFunction(ctx, fn, code); err != nil {
			t.Fatal(err)
		}
	}
	status, body = e.do(req{method: "DELETE", path: "/v1/secrets/m/API_KEY"})
	wantError(t, status, body, 409, "Secret API_KEY is used by function(s) user_a, user_b of module m")
	status, body = e.do(req{method: "GET", path: "/v1/secrets/m"})
	if got := wantData[[]secretInfo](t, status, body, 200); len(got) != 1 {
		t.Fatalf("the secret went: %s", body)
	}
}

// configStore gives functions the config secrets the embedded store does
// not keep on this branch (fnspec.Spec.Config is persisted by i14-config).
type configStore struct {
	store.Store
	store.SecretStore
	secrets map[string][]string
}

func (c configStore) ListFunctions(ctx context.Context) ([]store.Function, error) {
	fns, err := c.Store.ListFunctions(ctx)
	for i := range fns {
		if s, ok := c.secrets[fns[i].Module+"/"+fns[i].Name]; ok {
			fns[i].Spec.Config.Secrets = s
		}
	}
	return fns, err
}

func (c configStore) Close() error { return c.Store.Close() }

func digestOf(code []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(code))
}

// TestConfigSecretRefsREST: through the REST API, a create or update
// whose config names a secret the module lacks is 400 naming it and
// changes nothing; once set, the create passes and the secret cannot be
// deleted while the function names it.
func TestConfigSecretRefsREST(t *testing.T) {
	e := start(t, openEmbedded(t))
	hello := fixture(t, "hello_c.wasm")
	status, body := e.json("POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "m"}})
	wantData[nameItem](t, status, body, 201)
	before := e.snapshot()
	status, body = e.upload("POST", "/v1/fn/m", part{name: "name", value: "f"}, part{name: "config", value: `{"secrets":["API_KEY","NOPE"]}`}, codePart(hello))
	wantError(t, status, body, 400, "module m has no secret API_KEY, NOPE")
	e.wantUnchanged(before)

	status, body = e.do(req{method: "PUT", path: "/v1/secrets/m/API_KEY", body: []byte(`{"value":"x"}`), contentType: "application/json"})
	wantData[secretInfo](t, status, body, 200)
	status, body = e.upload("POST", "/v1/fn/m", part{name: "name", value: "f"}, part{name: "config", value: `{"secrets":["API_KEY"]}`}, codePart(hello))
	wantData[nameItem](t, status, body, 201)
	before = e.snapshot()
	status, body = e.upload("PUT", "/v1/fn/m/f", part{name: "config", value: `{"secrets":["API_KEY","GONE"]}`}, codePart(hello))
	wantError(t, status, body, 400, "module m has no secret GONE")
	e.wantUnchanged(before)

	status, body = e.do(req{method: "DELETE", path: "/v1/secrets/m/API_KEY"})
	wantError(t, status, body, 409, "Secret API_KEY is used by function(s) f of module m")
	// Once the function names it no more, it goes.
	status, body = e.upload("PUT", "/v1/fn/m/f", codePart(hello))
	wantData[nameItem](t, status, body, 200)
	if status, body = e.do(req{method: "DELETE", path: "/v1/secrets/m/API_KEY"}); status != 204 {
		t.Fatalf("DELETE after the function let go: %d %s", status, body)
	}
}
