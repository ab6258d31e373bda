package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestFunctionConfig: a function's config is taken on create and update,
// shown by GET with secret names only, cleared by an update without it,
// and a refused config changes nothing (GET shows the old one).
func TestFunctionConfig(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t))
	hello := fixture(t, "hello_c.wasm")
	type shown struct {
		Env        map[string]string `json:"env"`
		Secrets    []string          `json:"secrets"`
		AllowHosts []string          `json:"allow_hosts"`
	}
	get := func() shown {
		t.Helper()
		status, body := e.do(req{method: "GET", path: "/v1/fn/_/cfg"})
		raw := wantData[map[string]json.RawMessage](t, status, body, 200)
		var s shown
		if err := json.Unmarshal(raw["config"], &s); err != nil {
			t.Fatalf("config %s: %v", raw["config"], err)
		}
		return s
	}
	// A config may name only the module's secrets: set it first.
	status, body := e.do(req{method: "PUT", path: "/v1/secrets/_/API_KEY", body: []byte(`{"value":"k"}`), contentType: "application/json"})
	if status != 200 {
		t.Fatalf("set the secret: %d %s", status, body)
	}
	cfg := `{"env":{"GREETING":"hi","B":"x=y"},"secrets":["API_KEY"],"allow_hosts":["API.Example.com","*.example.org:443","127.0.0.1"]}`
	status, body = e.upload("POST", "/v1/fn/_", part{name: "name", value: "cfg"}, part{name: "config", value: cfg}, codePart(hello))
	wantData[nameItem](t, status, body, 201)
	want := shown{Env: map[string]string{"GREETING": "hi", "B": "x=y"}, Secrets: []string{"API_KEY"},
		AllowHosts: []string{"api.example.com", "*.example.org:443", "127.0.0.1"}}
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("GET config = %+v, want %+v", got, want)
	}

	for _, bad := range []string{`{"env":{"A":"1"},"allow_hosts":["no such host!"]}`, `{"allowhosts":["a.test"]}`, `{"env":{"A":1}}`} {
		status, body = e.upload("PUT", "/v1/fn/_/cfg", part{name: "config", value: bad}, codePart(hello))
		wantError(t, status, body, 400, "Invalid config")
		if got := get(); !reflect.DeepEqual(got, want) {
			t.Fatalf("after a refused update (%s): %+v, want the old %+v", bad, got, want)
		}
	}

	status, body = e.upload("PUT", "/v1/fn/_/cfg", part{name: "config", value: `{"env":{"ONLY":"this"}}`}, codePart(hello))
	wantData[nameItem](t, status, body, 200)
	if got := get(); !reflect.DeepEqual(got, shown{Env: map[string]string{"ONLY": "this"}, Secrets: []string{}, AllowHosts: []string{}}) {
		t.Fatalf("after the update: %+v", got)
	}
	status, body = e.upload("PUT", "/v1/fn/_/cfg", codePart(hello))
	wantData[nameItem](t, status, body, 200)
	if got := get(); !reflect.DeepEqual(got, shown{Env: map[string]string{}, Secrets: []string{}, AllowHosts: []string{}}) {
		t.Fatalf("an update without config should clear it: %+v", got)
	}
}
