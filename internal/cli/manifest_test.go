package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	good := `# an app
module: shop
functions:
  - name: price
    source: ./price
    events: [{type: mqtt, params: {topic: shop/price, local: true}}, {type: mqtt, params: {host: broker, port: "1883", topic: t}}]
    sinks: [{type: couchdb, params: {url: "http://couch:5984/db", username: u, password: p}}]
    metadata: {tag: edge, capacity: 1024}
    config: {env: {CURRENCY: EUR, PORT: 8080}, secrets: [API_KEY], allow_hosts: [API.example.com]}
    timers: [{cron: "*/5  * * * *", local: true}, {every: 90s}]
  - name: cart
    wasm: /abs/cart.wasm
secrets: [OTHER]
`
	m, err := parseManifest("wisp.yaml", "/app", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Module != "shop" || len(m.Functions) != 2 || strings.Join(m.Secrets, ",") != "API_KEY,OTHER" {
		t.Fatalf("manifest %+v", m)
	}
	price, cart := m.Functions[0], m.Functions[1]
	if price.Source != "/app/price" || price.Wasm != "" || cart.Wasm != "/abs/cart.wasm" || cart.Source != "" {
		t.Errorf("paths: %+v %+v", price, cart)
	}
	for _, c := range []struct{ got, want string }{
		{price.Spec.Events, `[{"type":"mqtt","params":{"topic":"shop/price","local":true}},{"type":"mqtt","params":{"host":"broker","port":1883,"topic":"t"}},` +
			`{"type":"timer","params":{"cron":"*/5 * * * *","local":true}},{"type":"timer","params":{"every":"1m30s"}}]`},
		{price.Spec.Sinks, `[{"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"p"}}]`},
		{price.Spec.sinksShown, `[{"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"********"}}]`},
		{price.Spec.Metadata, `{"tag":"edge","capacity":1024}`},
		{price.Spec.Config, `{"env":{"CURRENCY":"EUR","PORT":"8080"},"secrets":["API_KEY"],"allow_hosts":["api.example.com"]}`},
		{cart.Spec.Events + cart.Spec.Sinks + cart.Spec.Metadata + cart.Spec.Config, ""},
	} {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
	if m, err := parseManifest("wisp.yaml", ".", []byte("functions: [{name: f, wasm: f.wasm}]")); err != nil || m.Module != "_" {
		t.Errorf("no module: %+v %v; want _", m, err)
	}
}

func TestParseManifestErrors(t *testing.T) {
	fn := "module: m\nfunctions:\n  - name: f\n    wasm: f.wasm\n"
	tests := []struct{ name, text, want string }{
		{"empty", "", "wisp.yaml: the file is empty"},
		{"not yaml", "module: [\n", "wisp.yaml:"},
		{"unknown top key", "module: m\nfunction: []\n", `wisp.yaml:2: the manifest: unknown key "function"`},
		{"unknown function key", fn + "    sorce: ./x\n", `wisp.yaml:5: a function: unknown key "sorce" (known: name, source, wasm`},
		{"missing name", "functions:\n  - wasm: f.wasm\n", "wisp.yaml:2: a function without a name"},
		{"both source and wasm", fn + "    source: ./f\n", "wisp.yaml:4: function f: both source and wasm"},
		{"no code", "functions:\n  - name: f\n", "wisp.yaml:2: function f: no code"},
		{"bad function name", "functions:\n  - name: a-b\n    wasm: x\n", `wisp.yaml:2: invalid function name "a-b"`},
		{"bad module name", "module: a b\nfunctions: [{name: f, wasm: x}]\n", `wisp.yaml:1: invalid module name "a b"`},
		{"no functions", "module: m\n", "wisp.yaml:1: functions is missing"},
		{"empty functions", "functions: []\n", "wisp.yaml:1: functions must be a list of at least one function"},
		{"duplicate function", fn + "  - name: f\n    wasm: g.wasm\n", "wisp.yaml:5: function f is listed twice (first at line 3)"},
		{"duplicate key", fn + "    wasm: g.wasm\n", `wisp.yaml:5: a function: key "wasm" appears twice (first at line 4)`},
		{"unknown event key", fn + "    events: [{type: mqtt, params: {topic: t, local: true, qos: 1}}]\n", `wisp.yaml:5: function f: events[0]: params: unknown key "qos"`},
		{"event type", fn + "    events:\n      - type: http\n        params: {}\n", `wisp.yaml:6: function f: events[0]: type "http" is not supported`},
		{"bad topic", fn + "    events: [{type: mqtt, params: {topic: \"a/#/b\", local: true}}]\n", "wisp.yaml:5: function f: events[0]: params.topic"},
		{"cloud event without host", fn + "    events: [{type: mqtt, params: {topic: t}}]\n", "params.host is missing"},
		{"bad cron", fn + "    timers: [{cron: \"* * *\"}]\n", `wisp.yaml:5: function f: timers[0]: cron "* * *" has 3 fields`},
		{"cron and every", fn + "    timers: [{cron: \"* * * * *\", every: 1m}]\n", "not both"},
		{"bad every", fn + "    timers: [{every: 10ms}]\n", "want a duration of 1s or more"},
		{"timer key", fn + "    timers: [{at: noon}]\n", `timers[0]: unknown key "at"`},
		{"bad sink", fn + "    sinks: [{type: couchdb, params: {url: \"ftp://x\"}}]\n", "wisp.yaml:5: function f: sinks[0]: params.url must be an http or https URL"},
		{"metadata key", fn + "    metadata: {tags: x}\n", `wisp.yaml:5: function f: metadata: unknown key "tags"`},
		{"negative capacity", fn + "    metadata: {capacity: -1}\n", "capacity must be a whole number"},
		{"config key", fn + "    config: {envs: {}}\n", `function f: config: unknown key "envs"`},
		{"bad env name", fn + "    config: {env: {1X: v}}\n", `env name "1X"`},
		{"bad host", fn + "    config: {allow_hosts: [\"http://x\"]}\n", "allow_hosts[0]"},
		{"bad secret", "secrets: [\"a b\"]\n" + fn[10:], `wisp.yaml:1: secrets: secret name "a b"`},
		{"alias", "x: &a 1\n" + fn, `unknown key "x"`},
		{"alias value", "module: &a m\nfunctions:\n  - name: f\n    wasm: f.wasm\n    metadata: *a\n", "wisp.yaml:5: a function: YAML aliases are not supported"},
		{"two documents", fn + "---\nmodule: n\n", "a second YAML document"},
		{"project file", "# A Wisp function project\nname: f\nlanguage: c\n", "this is a function project file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseManifest("wisp.yaml", ".", []byte(tt.text))
			var me *manifestError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v; want a manifest error containing %q", err, tt.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("module: m\nfunctions:\n  - name: f\n    wasm: f.wasm\n    events: [{type: mqtt, params: {topic: t, local: true}}]\n"))
	f.Add([]byte("functions: [{name: f, source: ., timers: [{every: 1m}], config: {env: {A: b}}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest("wisp.yaml", ".", b)
		if err == nil && (m == nil || len(m.Functions) == 0) {
			t.Fatal("a manifest without functions was accepted")
		}
	})
}
