package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wispfn/wisp/controller/fnspec"
)

// The deploy manifest (docs/manifest.md): one YAML file describing a
// module and its functions, read strictly (an unknown key is an error naming
// its line) and normalised with the controller's own parsers
// (controller/fnspec), so that what it asks for compares equal to what the
// controller shows back once it is deployed.

// Bounds of a manifest.
const (
	maxManifestBytes     = 1 << 20
	maxManifestFunctions = 256
	maxManifestEvents    = 64
	maxManifestSinks     = 16
	maxManifestTimers    = 16
	maxManifestSecrets   = 256
)

// DefaultManifest is the file `wisp deploy` reads without -f.
const DefaultManifest = "wisp.yaml"

// manifest is a parsed deploy manifest.
type manifest struct {
	file      string // as named on the command line, for messages
	Module    string
	Functions []manifestFunction
	Secrets   []string // every secret name referenced (top level and functions), sorted
}

// manifestFunction is one function of a manifest: where its code comes
// from and its fnSettings, normalised.
type manifestFunction struct {
	line   int
	Name   string
	Source string // directory to build (absolute or relative to the cwd), or ""
	Wasm   string // prebuilt module, or ""
	Spec   fnSettings
}

// fnSettings are a function's fnSettings in their normalised JSON: what is sent
// ("" is not sent) and what is compared.
type fnSettings struct {
	Events   string // JSON array or ""
	Sinks    string // JSON array with the passwords, or ""
	Metadata string // JSON object or ""
	Config   string // JSON object or ""
	// sinksShown is Sinks with the passwords redacted, as GET shows them.
	sinksShown string
}

// manifestError is a manifest problem at a line.
type manifestError struct {
	file string
	line int
	msg  string
}

func (e *manifestError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return fmt.Sprintf("%s: %s", e.file, e.msg)
}

type manifestParser struct {
	file string
}

func (p *manifestParser) errf(n *yaml.Node, format string, a ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &manifestError{p.file, line, fmt.Sprintf(format, a...)}
}

var yamlLine = strings.NewReplacer("yaml: ", "")

// parseManifest reads a manifest's bytes. file names it in errors; dir is
// the directory source and wasm paths are relative to.
func parseManifest(file, dir string, b []byte) (*manifest, error) {
	p := &manifestParser{file: file}
	if len(b) > maxManifestBytes {
		return nil, p.errf(nil, "%d bytes; a manifest is at most %d", len(b), maxManifestBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return nil, p.errf(nil, "the file is empty; want at least module and functions (docs/manifest.md)")
		}
		msg := yamlLine.Replace(err.Error())
		// yaml.v3 says "line N: reason": make it file:N: reason.
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, reason, ok := strings.Cut(rest, ": "); ok {
				if ln, err := strconv.Atoi(n); err == nil {
					return nil, &manifestError{file, ln, "not valid YAML: " + reason}
				}
			}
		}
		return nil, p.errf(nil, "not valid YAML: %s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, p.errf(&extra, "a second YAML document; a manifest is one document")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	keys, err := p.mapping(root, "the manifest", "module", "functions", "secrets")
	if err != nil {
		if _, isProject := keysOf(root)["language"]; isProject {
			return nil, p.errf(root, "this is a function project file (name, language: 'wisp fn build' reads it), not a deploy manifest; "+
				"the manifest is the %s beside the project directory (docs/manifest.md)", DefaultManifest)
		}
		return nil, err
	}
	m := &manifest{file: file, Module: "_"}
	if n, ok := keys["module"]; ok {
		if m.Module, err = p.str(n, "module"); err != nil {
			return nil, err
		}
		if err := checkName("module", m.Module); err != nil {
			return nil, p.errf(n, "%v", err)
		}
	}
	secrets := map[string]bool{}
	if n, ok := keys["secrets"]; ok {
		names, err := p.strList(n, "secrets", maxManifestSecrets)
		if err != nil {
			return nil, err
		}
		for i, s := range names {
			if err := checkSecretName(s); err != nil {
				return nil, p.errf(n.Content[i], "secrets: %v", err)
			}
			secrets[s] = true
		}
	}
	fns, ok := keys["functions"]
	if !ok {
		return nil, p.errf(root, "functions is missing: list the module's functions (docs/manifest.md)")
	}
	if fns.Kind != yaml.SequenceNode || len(fns.Content) == 0 {
		return nil, p.errf(fns, "functions must be a list of at least one function")
	}
	if len(fns.Content) > maxManifestFunctions {
		return nil, p.errf(fns, "%d functions; at most %d", len(fns.Content), maxManifestFunctions)
	}
	seen := map[string]int{}
	for _, n := range fns.Content {
		f, err := p.function(n, dir)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[f.Name]; dup {
			return nil, p.errf(n, "function %s is listed twice (first at line %d)", f.Name, first)
		}
		seen[f.Name] = n.Line
		if f.Spec.Config != "" {
			var c fnspec.Config
			json.Unmarshal([]byte(f.Spec.Config), &c)
			for _, s := range c.Secrets {
				secrets[s] = true
			}
		}
		m.Functions = append(m.Functions, f)
	}
	for s := range secrets {
		m.Secrets = append(m.Secrets, s)
	}
	slices.Sort(m.Secrets)
	return m, nil
}

var functionKeys = []string{"name", "source", "wasm", "events", "sinks", "metadata", "config", "timers"}

func (p *manifestParser) function(n *yaml.Node, dir string) (manifestFunction, error) {
	f := manifestFunction{line: n.Line}
	keys, err := p.mapping(n, "a function", functionKeys...)
	if err != nil {
		return f, err
	}
	nameNode, ok := keys["name"]
	if !ok {
		return f, p.errf(n, "a function without a name")
	}
	if f.Name, err = p.str(nameNode, "name"); err != nil {
		return f, err
	}
	if err := checkName("function", f.Name); err != nil {
		return f, p.errf(nameNode, "%v", err)
	}
	what := "function " + f.Name
	src, hasSrc := keys["source"]
	wasm, hasWasm := keys["wasm"]
	switch {
	case hasSrc && hasWasm:
		return f, p.errf(wasm, "%s: both source and wasm; give one (a directory to build, or a prebuilt .wasm)", what)
	case !hasSrc && !hasWasm:
		return f, p.errf(n, "%s: no code: give source (a directory to build) or wasm (a prebuilt .wasm)", what)
	case hasSrc:
		s, err := p.str(src, "source")
		if err != nil || s == "" {
			return f, p.errf(src, "%s: source must be a directory path", what)
		}
		f.Source = resolvePath(dir, s)
	default:
		s, err := p.str(wasm, "wasm")
		if err != nil || s == "" {
			return f, p.errf(wasm, "%s: wasm must be a file path", what)
		}
		f.Wasm = resolvePath(dir, s)
	}

	var events []any
	if en, ok := keys["events"]; ok {
		if events, err = p.events(en, what); err != nil {
			return f, err
		}
	}
	if tn, ok := keys["timers"]; ok {
		timers, err := p.timers(tn, what)
		if err != nil {
			return f, err
		}
		events = append(events, timers...)
	}
	if len(events) > maxManifestEvents {
		return f, p.errf(n, "%s: %d events and timers; at most %d", what, len(events), maxManifestEvents)
	}
	if len(events) > 0 {
		f.Spec.Events = string(mustJSON(events))
	}
	if sn, ok := keys["sinks"]; ok {
		if err := p.sinks(sn, what, &f.Spec); err != nil {
			return f, err
		}
	}
	if mn, ok := keys["metadata"]; ok {
		if _, err := p.mapping(mn, what+": metadata", "tag", "capacity", "idempotent"); err != nil {
			return f, err
		}
		v, err := p.plain(mn)
		if err != nil {
			return f, err
		}
		md, err := normMetadata(mustJSON(v))
		if err != nil {
			return f, p.errf(mn, "%s: metadata: %s", what, fnspecReason(err))
		}
		f.Spec.Metadata = md
	}
	if cn, ok := keys["config"]; ok {
		if err := p.config(cn, what, &f.Spec); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (p *manifestParser) events(n *yaml.Node, what string) ([]any, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: events must be a list of {type, params}", what)
	}
	var out []any
	for i, en := range n.Content {
		at := fmt.Sprintf("%s: events[%d]", what, i)
		keys, err := p.mapping(en, at, "type", "params")
		if err != nil {
			return nil, err
		}
		tn, ok := keys["type"]
		if !ok {
			return nil, p.errf(en, "%s: type is missing (mqtt or timer)", at)
		}
		typ, err := p.str(tn, "type")
		if err != nil {
			return nil, err
		}
		pn, ok := keys["params"]
		if !ok {
			return nil, p.errf(en, "%s: params are missing", at)
		}
		switch typ {
		case "mqtt":
			_, err = p.mapping(pn, at+": params", "host", "port", "topic", "local")
		case "timer":
			_, err = p.mapping(pn, at+": params", "cron", "every", "local")
		default:
			return nil, p.errf(tn, "%s: type %q is not supported (want mqtt or timer)", at, typ)
		}
		if err != nil {
			return nil, err
		}
		params, err := p.plain(pn)
		if err != nil {
			return nil, err
		}
		ev, err := normEvent(map[string]any{"type": typ, "params": params})
		if err != nil {
			return nil, p.errf(en, "%s: %s", at, fnspecReason(err))
		}
		out = append(out, ev)
	}
	return out, nil
}

// timers are sugar: {cron|every, local} is the event
// {"type":"timer","params":{"cron"|"every":..., "local":...}}.
func (p *manifestParser) timers(n *yaml.Node, what string) ([]any, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: timers must be a list of {cron or every, local}", what)
	}
	if len(n.Content) > maxManifestTimers {
		return nil, p.errf(n, "%s: %d timers; at most %d", what, len(n.Content), maxManifestTimers)
	}
	var out []any
	for i, tn := range n.Content {
		at := fmt.Sprintf("%s: timers[%d]", what, i)
		if _, err := p.mapping(tn, at, "cron", "every", "local"); err != nil {
			return nil, err
		}
		params, err := p.plain(tn)
		if err != nil {
			return nil, err
		}
		ev, err := normEvent(map[string]any{"type": "timer", "params": params})
		if err != nil {
			return nil, p.errf(tn, "%s: %s", at, fnspecReason(err))
		}
		out = append(out, ev)
	}
	return out, nil
}

func (p *manifestParser) sinks(n *yaml.Node, what string, s *fnSettings) error {
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, "%s: sinks must be a list of {type, params}", what)
	}
	if len(n.Content) > maxManifestSinks {
		return p.errf(n, "%s: %d sinks; at most %d", what, len(n.Content), maxManifestSinks)
	}
	var all, shown []fnspec.Sink
	for i, sn := range n.Content {
		at := fmt.Sprintf("%s: sinks[%d]", what, i)
		keys, err := p.mapping(sn, at, "type", "params")
		if err != nil {
			return err
		}
		if pn, ok := keys["params"]; ok {
			if _, err := p.mapping(pn, at+": params", "url", "username", "password"); err != nil {
				return err
			}
		}
		v, err := p.plain(sn)
		if err != nil {
			return err
		}
		parsed, err := fnspec.ParseSinks(mustJSON([]any{v}))
		if err != nil {
			return p.errf(sn, "%s: %s", at, fnspecReason(err))
		}
		all = append(all, parsed[0])
		shown = append(shown, parsed[0].Redacted())
	}
	if len(all) > 0 {
		s.Sinks, s.sinksShown = string(mustJSON(all)), string(mustJSON(shown))
	}
	return nil
}

func (p *manifestParser) config(n *yaml.Node, what string, s *fnSettings) error {
	keys, err := p.mapping(n, what+": config", "env", "secrets", "allow_hosts")
	if err != nil {
		return err
	}
	in := map[string]any{}
	if en, ok := keys["env"]; ok {
		env, err := p.mapping(en, what+": config.env")
		if err != nil {
			return err
		}
		m := map[string]string{}
		for k, vn := range env {
			// Environment values are strings: PORT: 8080 means "8080".
			if vn.Kind != yaml.ScalarNode || vn.Tag == "!!null" {
				return p.errf(vn, "%s: config.env.%s must be a string", what, k)
			}
			m[k] = vn.Value
		}
		in["env"] = m
	}
	for _, k := range []string{"secrets", "allow_hosts"} {
		if ln, ok := keys[k]; ok {
			list, err := p.strList(ln, what+": config."+k, 1<<10)
			if err != nil {
				return err
			}
			in[k] = list
		}
	}
	c, err := normConfig(mustJSON(in))
	if err != nil {
		return p.errf(n, "%s: config: %s", what, fnspecReason(err))
	}
	s.Config = c
	return nil
}

// mapping checks that n is a mapping whose keys are unique strings among
// allowed (any key when allowed is empty), and returns the value nodes.
func (p *manifestParser) mapping(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind == yaml.AliasNode {
		return nil, p.errf(n, "%s: YAML aliases are not supported in a manifest", what)
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "%s must be a mapping (key: value)", what)
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			return nil, p.errf(k, "%s: keys must be plain names", what)
		}
		if len(allowed) > 0 && !slices.Contains(allowed, k.Value) {
			return nil, p.errf(k, "%s: unknown key %q (known: %s)", what, k.Value, strings.Join(allowed, ", "))
		}
		if first, dup := lines[k.Value]; dup {
			return nil, p.errf(k, "%s: key %q appears twice (first at line %d)", what, k.Value, first)
		}
		if v.Kind == yaml.AliasNode {
			return nil, p.errf(v, "%s: YAML aliases are not supported in a manifest", what)
		}
		lines[k.Value] = k.Line
		out[k.Value] = v
	}
	return out, nil
}

func keysOf(n *yaml.Node) map[string]bool {
	out := map[string]bool{}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			out[n.Content[i].Value] = true
		}
	}
	return out
}

func (p *manifestParser) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", p.errf(n, "%s must be a string", what)
	}
	return n.Value, nil
}

func (p *manifestParser) strList(n *yaml.Node, what string, max int) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s must be a list of strings", what)
	}
	if len(n.Content) > max {
		return nil, p.errf(n, "%s: %d entries; at most %d", what, len(n.Content), max)
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, err := p.str(c, what+" entry")
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// plain turns a YAML node into the JSON value it stands for.
func (p *manifestParser) plain(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.MappingNode:
		keys, err := p.mapping(n, "a value")
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(keys))
		for k, v := range keys {
			if out[k], err = p.plain(v); err != nil {
				return nil, err
			}
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := p.plain(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return n.Value, nil
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, p.errf(n, "%v", err)
			}
			return b, nil
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				return nil, p.errf(n, "%q is not a whole number that fits 64 bits", n.Value)
			}
			return json.Number(strconv.FormatInt(i, 10)), nil
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, p.errf(n, "%q is not a number", n.Value)
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
		return nil, p.errf(n, "unsupported YAML value %s", n.Tag)
	case yaml.AliasNode:
		return nil, p.errf(n, "YAML aliases are not supported in a manifest")
	}
	return nil, p.errf(n, "unsupported YAML node")
}

func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, filepath.FromSlash(p))
}

func checkSecretName(s string) error {
	if _, err := fnspec.ParseConfig(mustJSON(map[string]any{"secrets": []string{s}})); err != nil {
		return errors.New(fnspecReason(err))
	}
	return nil
}

// fnspecReason is a fnspec error without its "Invalid <field>: event 0: "
// preamble (the manifest error names the place itself).
func fnspecReason(err error) string {
	var fe *fnspec.Error
	if !errors.As(err, &fe) {
		return err.Error()
	}
	r := fe.Reason
	for _, p := range []string{"event 0: ", "sink 0: "} {
		r = strings.TrimPrefix(r, p)
	}
	return r
}

// Normalisation: the manifest's values and the controller's answers go
// through the same functions, so that equal fnSettings give equal text.

// normEvent normalises one event (a decoded JSON object). MQTT events go
// through fnspec.ParseEvents. Timer events are normalised here until the
// controller's parser knows them (branch i14-timers): exactly one of cron
// (five fields) or every (a Go duration of 1s or more), and local.
func normEvent(ev map[string]any) (any, error) {
	typ, _ := ev["type"].(string)
	if typ == "timer" {
		if parsed, err := fnspec.ParseEvents(mustJSON([]any{ev})); err == nil {
			return parsed[0], nil // the controller's parser knows timers
		}
		return normTimer(ev["params"])
	}
	parsed, err := fnspec.ParseEvents(mustJSON([]any{ev}))
	if err != nil {
		return nil, err
	}
	return parsed[0], nil
}

// timerEvent is {"type":"timer","params":{...}} as the timers branch
// shows it: local sits in params, as in MQTT events.
type timerEvent struct {
	Type   string      `json:"type"`
	Params timerParams `json:"params"`
}

type timerParams struct {
	Cron  string `json:"cron,omitempty"`
	Every string `json:"every,omitempty"`
	Local bool   `json:"local,omitempty"`
}

func normTimer(raw any) (any, error) {
	params, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("timer params must be an object with cron or every")
	}
	var t timerParams
	for k, v := range params {
		switch k {
		case "cron", "every":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("timer %s must be a string", k)
			}
			if k == "cron" {
				t.Cron = strings.Join(strings.Fields(s), " ")
			} else {
				t.Every = s
			}
		case "local":
			b, ok := v.(bool)
			if !ok {
				return nil, errors.New("timer local must be true or false")
			}
			t.Local = b
		default:
			return nil, fmt.Errorf("timer: unknown key %q (known: cron, every, local)", k)
		}
	}
	switch {
	case t.Cron != "" && t.Every != "":
		return nil, errors.New("a timer has cron or every, not both")
	case t.Cron == "" && t.Every == "":
		return nil, errors.New("a timer needs cron (\"*/5 * * * *\") or every (\"30s\")")
	case t.Cron != "":
		if n := len(strings.Fields(t.Cron)); n != 5 {
			return nil, fmt.Errorf("cron %q has %d fields; want 5 (minute hour day-of-month month day-of-week)", t.Cron, n)
		}
	default:
		d, err := time.ParseDuration(t.Every)
		if err != nil || d < time.Second {
			return nil, fmt.Errorf("every %q: want a duration of 1s or more, e.g. \"30s\", \"5m\"", t.Every)
		}
		t.Every = d.String()
	}
	return timerEvent{Type: "timer", Params: t}, nil
}

// normEventsShown normalises the events a controller shows; an event it
// cannot read is kept as its compact JSON (so it differs from any
// manifest's).
func normEventsShown(raw json.RawMessage) string {
	var evs []map[string]any
	if decodeNumbers(raw, &evs) != nil || len(evs) == 0 {
		return ""
	}
	out := make([]any, 0, len(evs))
	for _, e := range evs {
		n, err := normEvent(e)
		if err != nil {
			out = append(out, e)
			continue
		}
		out = append(out, n)
	}
	return string(mustJSON(out))
}

func normSinksShown(raw json.RawMessage) string {
	if absentJSON(raw) {
		return ""
	}
	sinks, err := fnspec.ParseSinks(raw)
	if err != nil {
		return compactJSON(raw)
	}
	if len(sinks) == 0 {
		return ""
	}
	for i := range sinks {
		sinks[i] = sinks[i].Redacted()
	}
	return string(mustJSON(sinks))
}

func normMetadata(raw json.RawMessage) (string, error) {
	if absentJSON(raw) {
		return "", nil
	}
	md, err := fnspec.ParseMetadata(raw)
	if err != nil {
		return "", err
	}
	if md == (fnspec.Metadata{}) {
		return "", nil
	}
	return string(mustJSON(md)), nil
}

func normConfig(raw json.RawMessage) (string, error) {
	if absentJSON(raw) {
		return "", nil
	}
	c, err := fnspec.ParseConfig(raw)
	if err != nil {
		return "", err
	}
	if c.IsZero() {
		return "", nil
	}
	return string(mustJSON(c)), nil
}

func absentJSON(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null" || s == "[]" || s == "{}"
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func decodeNumbers(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}
