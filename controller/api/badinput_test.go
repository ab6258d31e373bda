package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// badNames break the naming rule: quotes, SQL, unicode, spaces, 161 chars.
var badNames = []string{
	`a"b`,
	`it's`,
	`x'); DROP TABLE functions; --`,
	`m; DELETE FROM modules`,
	"módulo",
	"名前",
	"emoji_🙂",
	"a b",
	"a-b",
	"a.b",
	"a\x00b",
	strings.Repeat("a", 161),
}

// testBadInput sends every bad request of issue 3 and checks the status, the
// envelope, and that the store did not change. It expects the state
// testFlow leaves: module "_" with function "wat", script "s", subject "alice".
func testBadInput(t *testing.T, e *env) {
	// Make sure there is a module besides "_" with a function.
	status, body := e.json("POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "bad_m"}})
	wantData[nameItem](t, status, body, 201)
	wat := fixture(t, "hello_wat.wasm")
	status, body = e.upload("POST", "/v1/fn/bad_m", part{name: "name", value: "f"}, codePart(wat))
	wantData[nameItem](t, status, body, 201)
	status, body = e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": "bob"}})
	bob := wantData[newSubject](t, status, body, 201)
	status, body = e.json("POST", "/v1/fn", map[string]any{"module": map[string]string{"name": "bad_m2"}})
	wantData[nameItem](t, status, body, 201)

	type tc struct {
		name   string
		req    req
		status int
		detail []string
	}
	mp := func(method, path string, parts ...part) req {
		b, ct := multipartBody(t, parts...)
		return req{method: method, path: path, body: b, contentType: ct, bad: true}
	}
	js := func(method, path, body string) req {
		return req{method: method, path: path, body: []byte(body), contentType: "application/json", bad: true}
	}
	name := func(n string) part { return part{name: "name", value: n} }
	code := codePart(wat)
	cases := []tc{
		// Tokens.
		{"no token", req{method: "GET", path: "/v1/fn", token: noToken, bad: true}, 401, []string{"token"}},
		{"bad token", req{method: "GET", path: "/v1/fn", token: "Bearer wisp_nope", bad: true}, 401, []string{"token"}},
		{"basic auth", req{method: "GET", path: "/v1/fn", token: "Basic YWRtaW46YWRtaW4=", bad: true}, 401, []string{"Bearer"}},
		{"empty bearer", req{method: "GET", path: "/v1/fn", token: "Bearer ", bad: true}, 401, nil},
		{"huge token", req{method: "GET", path: "/v1/fn", token: "Bearer " + strings.Repeat("x", 1000), bad: true}, 401, nil},
		{"no token create module", req{method: "POST", path: "/v1/fn", body: []byte(`{"module":{"name":"x"}}`), contentType: "application/json", token: noToken, bad: true}, 401, nil},
		{"no token delete", req{method: "DELETE", path: "/v1/fn/bad_m", token: noToken, bad: true}, 401, nil},
		{"no token admin", req{method: "GET", path: "/v1/admin/subjects", token: noToken, bad: true}, 401, nil},
		{"non-admin list subjects", req{method: "GET", path: "/v1/admin/subjects", token: "Bearer " + bob.Token, bad: true}, 403, []string{"admin"}},
		{"non-admin create subject", req{method: "POST", path: "/v1/admin/subjects", body: []byte(`{"subject":{"name":"eve"}}`), contentType: "application/json", token: "Bearer " + bob.Token, bad: true}, 403, []string{"admin"}},

		// JSON bodies.
		{"malformed JSON", js("POST", "/v1/fn", `{"module":{"name":"x"`), 400, []string{"Invalid JSON"}},
		{"JSON not an object", js("POST", "/v1/fn", `["x"]`), 400, []string{"Invalid JSON"}},
		{"JSON trailing data", js("POST", "/v1/fn", `{"module":{"name":"x"}} {}`), 400, []string{"after the JSON"}},
		{"JSON trailing brackets", js("POST", "/v1/fn", `{"module":{"name":"x"}}]]}}`), 400, []string{"after the JSON"}},
		{"JSON trailing bracket invoke", js("POST", "/v1/fn/_/nofn", `{"args":{}}]`), 400, []string{"after the JSON"}},
		{"JSON trailing space is fine", js("POST", "/v1/fn/_/nofn", "{\"args\":{}} \n\t"), 404, nil},
		{"JSON wrong type", js("POST", "/v1/fn", `{"module":{"name":7}}`), 400, []string{"string"}},
		{"JSON missing module", js("POST", "/v1/fn", `{"name":"x"}`), 400, []string{"module"}},
		{"JSON empty body", js("POST", "/v1/fn", ``), 400, []string{"empty"}},
		{"wrong content type module", req{method: "POST", path: "/v1/fn", body: []byte(`{"module":{"name":"x"}}`), contentType: "text/plain", bad: true}, 400, []string{"Content-Type"}},
		{"wrong content type rename", req{method: "PUT", path: "/v1/fn/bad_m", body: []byte(`name=x`), contentType: "application/x-www-form-urlencoded", bad: true}, 400, []string{"Content-Type"}},
		{"malformed JSON rename", js("PUT", "/v1/fn/bad_m", `{`), 400, []string{"Invalid JSON"}},
		{"malformed JSON subject", js("POST", "/v1/admin/subjects", `{"subject":`), 400, []string{"Invalid JSON"}},
		{"missing subject", js("POST", "/v1/admin/subjects", `{}`), 400, []string{"subject"}},
		{"malformed JSON invoke", js("POST", "/v1/fn/bad_m/f", `{"args":`), 400, []string{"Invalid JSON"}},
		{"invoke args not object", js("POST", "/v1/fn/bad_m/f", `{"args":[1]}`), 400, []string{"args"}},
		{"invoke bad scheduling", js("POST", "/v1/fn/bad_m/f", `{"scheduling":{"language":"lua","script":"s"}}`), 400, []string{"scheduling"}},
		{"invoke wrong content type", req{method: "POST", path: "/v1/fn/bad_m/f", body: []byte(`args=1`), contentType: "text/plain", bad: true}, 400, []string{"Content-Type"}},

		// Multipart function uploads.
		{"create not multipart", js("POST", "/v1/fn/bad_m", `{"name":"g"}`), 400, []string{"multipart/form-data"}},
		{"update not multipart", js("PUT", "/v1/fn/bad_m/f", `{"name":"f"}`), 400, []string{"multipart/form-data"}},
		{"broken multipart", req{method: "POST", path: "/v1/fn/bad_m", body: []byte("--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ng"), contentType: "multipart/form-data; boundary=x", bad: true}, 400, []string{"multipart"}},
		{"no code part", mp("POST", "/v1/fn/bad_m", name("g")), 400, []string{"code"}},
		{"code as text field", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "code", value: string(wat)}), 400, []string{"file part"}},
		{"no name", mp("POST", "/v1/fn/bad_m", code), 400, []string{"name"}},
		{"not wasm", mp("POST", "/v1/fn/bad_m", name("g"), codePart(fixture(t, "notwasm.wasm"))), 400, []string{"not a wasm module", `\0asm`}},
		{"empty code", mp("POST", "/v1/fn/bad_m", name("g"), codePart(nil)), 400, []string{"not a wasm module"}},
		{"truncated module", mp("POST", "/v1/fn/bad_m", name("g"), codePart(fixture(t, "invalid.wasm"))), 400, []string{"Invalid wasm module"}},
		{"unknown import", mp("POST", "/v1/fn/bad_m", name("g"), codePart(fixture(t, "unknown_import.wasm"))), 400, []string{"fl_imps.__launch_missiles"}},
		{"unknown import module", mp("POST", "/v1/fn/bad_m", name("g"), codePart(fixture(t, "unknown_module.wasm"))), 400, []string{"env.host_secret"}},
		{"no export", mp("POST", "/v1/fn/bad_m", name("g"), codePart(fixture(t, "noexport.wasm"))), 400, []string{"__invoke"}},
		{"update not wasm", mp("PUT", "/v1/fn/bad_m/f", codePart(fixture(t, "notwasm.wasm"))), 400, []string{"not a wasm module"}},
		{"update without code", mp("PUT", "/v1/fn/bad_m/f", name("f")), 400, []string{"code"}},
		{"update renames", mp("PUT", "/v1/fn/bad_m/f", name("g"), code), 400, []string{"renamed"}},

		// Events, sinks, metadata, wait_for_workers.
		{"events malformed", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":`}, code), 400, []string{"Invalid events", "malformed JSON"}},
		{"events not array", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `{"type":"mqtt"}`}, code), 400, []string{"Invalid events"}},
		{"events null", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `null`}, code), 400, []string{"Invalid events"}},
		{"events bad type", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"kafka","params":{"host":"h","port":1,"topic":"t"}}]`}, code), 400, []string{"kafka"}},
		{"events no params", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"mqtt"}]`}, code), 400, []string{"params"}},
		{"events no host", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"mqtt","params":{"port":1883,"topic":"t"}}]`}, code), 400, []string{"host"}},
		{"events bad port", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"mqtt","params":{"host":"h","port":"http","topic":"t"}}]`}, code), 400, []string{"port"}},
		{"events port range", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"mqtt","params":{"host":"h","port":70000,"topic":"t"}}]`}, code), 400, []string{"port"}},
		{"events no topic", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"mqtt","params":{"host":"h","port":1}}]`}, code), 400, []string{"topic"}},
		{"timer bad cron", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"cron":"*/1 * * *"}}]`}, code), 400, []string{"Invalid events", "params.cron", "want 5 fields"}},
		{"timer cron out of range", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"cron":"0 25 * * *","local":true}}]`}, code), 400, []string{"params.cron", "hour field", "outside 0-23"}},
		{"timer cron never", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"cron":"0 0 31 2 *"}}]`}, code), 400, []string{"params.cron", "never occurs"}},
		{"timer every too short", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"every":"100ms"}}]`}, code), 400, []string{"params.every", "minimum of 1s"}},
		{"timer every not a duration", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"every":"daily"}}]`}, code), 400, []string{"params.every", "not a duration"}},
		{"timer every a number", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"every":30}}]`}, code), 400, []string{"Invalid events"}},
		{"timer both", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{"every":"1s","cron":"* * * * *"}}]`}, code), 400, []string{"not both"}},
		{"timer neither", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"timer","params":{}}]`}, code), 400, []string{"params.cron or params.every"}},
		{"update timer bad cron", mp("PUT", "/v1/fn/bad_m/f", part{name: "events", value: `[{"type":"timer","params":{"cron":"61 * * * *"}}]`}, code), 400, []string{"params.cron", "minute field"}},
		{"events unknown field", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "events", value: `[{"type":"mqtt","params":{"host":"h","port":1,"topic":"t","qos":9}}]`}, code), 400, []string{"qos"}},
		{"sinks malformed", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "sinks", value: `[{`}, code), 400, []string{"Invalid sinks"}},
		{"sinks bad type", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "sinks", value: `[{"type":"s3","params":{"url":"http://x"}}]`}, code), 400, []string{"s3"}},
		{"sinks bad url", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "sinks", value: `[{"type":"couchdb","params":{"url":"couch:5984"}}]`}, code), 400, []string{"url"}},
		{"sinks username not string", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "sinks", value: `[{"type":"couchdb","params":{"url":"http://c/db","username":1}}]`}, code), 400, []string{"username"}},
		{"metadata malformed", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "metadata", value: `{"tag":`}, code), 400, []string{"Invalid metadata"}},
		{"metadata not object", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "metadata", value: `[1]`}, code), 400, []string{"Invalid metadata"}},
		{"metadata negative capacity", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "metadata", value: `{"capacity":-1}`}, code), 400, []string{"capacity"}},
		{"metadata fractional capacity", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "metadata", value: `{"capacity":1.5}`}, code), 400, []string{"capacity"}},
		{"metadata tag not string", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "metadata", value: `{"tag":5}`}, code), 400, []string{"tag"}},
		{"metadata unknown field", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "metadata", value: `{"cpu":5}`}, code), 400, []string{"cpu"}},
		{"update bad metadata", mp("PUT", "/v1/fn/bad_m/f", part{name: "metadata", value: `{`}, code), 400, []string{"Invalid metadata"}},
		{"config malformed", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"env":`}, code), 400, []string{"Invalid config"}},
		{"config not object", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `[]`}, code), 400, []string{"Invalid config"}},
		{"config null", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `null`}, code), 400, []string{"Invalid config", "object"}},
		{"config unknown key", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"environment":{}}`}, code), 400, []string{"Invalid config", "environment"}},
		{"config bad env name", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"env":{"1X":"a"}}`}, code), 400, []string{"Invalid config", `"1X"`}},
		{"config env value not string", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"env":{"X":1}}`}, code), 400, []string{"Invalid config"}},
		{"config env NUL", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"env":{"X":"a\u0000b"}}`}, code), 400, []string{"Invalid config", "NUL"}},
		{"config env too big", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"env":{"X":"` + strings.Repeat("a", 5000) + `"}}`}, code), 400, []string{"Invalid config", "at most"}},
		{"config bad host", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"allow_hosts":["bad host"]}`}, code), 400, []string{"Invalid config", "allow_hosts[0]"}},
		{"config bad port", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"allow_hosts":["a.test:99999"]}`}, code), 400, []string{"Invalid config", "port"}},
		{"config bare wildcard domain", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"allow_hosts":["*.com"]}`}, code), 400, []string{"Invalid config", "wildcard"}},
		{"config URL as host", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"allow_hosts":["http://a.test"]}`}, code), 400, []string{"Invalid config"}},
		{"config secret twice", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"secrets":["K","K"]}`}, code), 400, []string{"Invalid config", "twice"}},
		{"config secret also env", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "config", value: `{"env":{"K":"v"},"secrets":["K"]}`}, code), 400, []string{"Invalid config", "both"}},
		{"update bad config", mp("PUT", "/v1/fn/bad_m/f", part{name: "config", value: `{"allow_hosts":["*.*"]}`}, code), 400, []string{"Invalid config"}},
		{"wait_for_workers not bool", mp("POST", "/v1/fn/bad_m", name("g"), part{name: "wait_for_workers", value: "maybe"}, code), 400, []string{"wait_for_workers"}},

		// Duplicates.
		{"duplicate module", js("POST", "/v1/fn", `{"module":{"name":"bad_m"}}`), 409, []string{"already exists"}},
		{"duplicate default module", js("POST", "/v1/fn", `{"module":{"name":"_"}}`), 409, []string{"already exists"}},
		{"rename onto existing", js("PUT", "/v1/fn/bad_m", `{"module":{"name":"bad_m2"}}`), 409, []string{"already exists"}},
		{"duplicate function", mp("POST", "/v1/fn/bad_m", name("f"), code), 409, []string{"already exists"}},
		{"duplicate subject", js("POST", "/v1/admin/subjects", `{"subject":{"name":"bob"}}`), 409, []string{"already exists"}},

		// Unknown things.
		{"unknown module", req{method: "GET", path: "/v1/fn/nope", bad: true}, 404, []string{"Module nope not found"}},
		{"rename unknown module", js("PUT", "/v1/fn/nope", `{"module":{"name":"x"}}`), 404, []string{"not found"}},
		{"delete unknown module", req{method: "DELETE", path: "/v1/fn/nope", bad: true}, 404, []string{"not found"}},
		{"create in unknown module", mp("POST", "/v1/fn/nope", name("g"), code), 404, []string{"Module nope not found"}},
		{"unknown function", req{method: "GET", path: "/v1/fn/bad_m/nope", bad: true}, 404, []string{"not found"}},
		{"update unknown function", mp("PUT", "/v1/fn/bad_m/nope", code), 404, []string{"not found"}},
		{"delete unknown function", req{method: "DELETE", path: "/v1/fn/bad_m/nope", bad: true}, 404, []string{"not found"}},
		{"invoke unknown function", js("POST", "/v1/fn/bad_m/nope", `{"args":{}}`), 404, []string{"not found"}},
		{"invoke unknown module", js("POST", "/v1/fn/nope/f", `{}`), 404, []string{"not found"}},
		{"unknown script", req{method: "GET", path: "/v1/scripts/app/nope", bad: true}, 404, []string{"Script nope not found"}},
		{"unknown route", req{method: "GET", path: "/v1/nothing", bad: true}, 404, nil},

		// The default module.
		{"delete default module", req{method: "DELETE", path: "/v1/fn/_", bad: true}, 400, []string{"Cannot delete default module"}},
		{"rename default module", js("PUT", "/v1/fn/_", `{"module":{"name":"x"}}`), 400, []string{"default module"}},
		{"rename to default module", js("PUT", "/v1/fn/bad_m", `{"module":{"name":"_"}}`), 400, []string{"default module"}},

		// APP scripts.
		{"script bad YAML", mp("POST", "/v1/scripts/app", name("s2"), part{name: "file", value: "- a: [", file: true}), 400, []string{"invalid APP script"}},
		{"script not APP", mp("POST", "/v1/scripts/app", name("s2"), part{name: "file", value: "a: b", file: true}), 400, []string{"list"}},
		{"script bad strategy", mp("POST", "/v1/scripts/app", name("s2"), part{name: "file", value: "- a: [{workers: '*', strategy: fastest}]", file: true}), 400, []string{"strategy"}},
		{"script no file", mp("POST", "/v1/scripts/app", name("s2")), 400, []string{"file"}},
		{"script not multipart", js("POST", "/v1/scripts/app", `{"name":"s2"}`), 400, []string{"multipart/form-data"}},
		{"duplicate script", mp("POST", "/v1/scripts/app", name("s"), part{name: "file", value: "- a: [{workers: '*'}]", file: true}), 409, []string{"already exists"}},
	}

	// Invalid names, in bodies and in paths.
	for _, n := range badNames {
		qb, _ := json.Marshal(n)
		q := string(qb)
		esc := url.PathEscape(n)
		cases = append(cases,
			tc{"module name " + n, js("POST", "/v1/fn", `{"module":{"name":`+q+`}}`), 422, []string{"Invalid module name"}},
			tc{"rename to " + n, js("PUT", "/v1/fn/bad_m", `{"module":{"name":`+q+`}}`), 422, []string{"Invalid module name"}},
			tc{"function name " + n, mp("POST", "/v1/fn/bad_m", name(n), code), 422, []string{"Invalid function name"}},
			tc{"subject name " + n, js("POST", "/v1/admin/subjects", `{"subject":{"name":`+q+`}}`), 422, []string{"Invalid subject name"}},
			tc{"script name " + n, mp("POST", "/v1/scripts/app", name(n), part{name: "file", value: "- a: [{workers: '*'}]", file: true}), 422, []string{"Invalid script name"}},
			tc{"path module " + n, req{method: "GET", path: "/v1/fn/" + esc, bad: true}, 422, []string{"Invalid module name"}},
			tc{"path function " + n, req{method: "DELETE", path: "/v1/fn/bad_m/" + esc, bad: true}, 422, []string{"Invalid function name"}},
			tc{"path create in " + n, mp("POST", "/v1/fn/"+esc, name("g"), code), 422, []string{"Invalid module name"}},
		)
	}
	cases = append(cases,
		tc{"empty module name", js("POST", "/v1/fn", `{"module":{"name":""}}`), 422, []string{"Invalid module name"}},
		tc{"empty function name", mp("POST", "/v1/fn/bad_m", name(""), code), 422, []string{"Invalid function name"}},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			status, body := e.do(c.req)
			wantError(t, status, body, c.status, c.detail...)
			e.wantUnchanged(before)
		})
	}
}
