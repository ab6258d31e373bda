package settings

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Setting is one entry of a Table: a typed target in the binary's config
// struct and the names it goes by.
type Setting struct {
	// Key is the config-file key, snake_case; the flag and the environment
	// variable derive from it (Flag, Env).
	Key string
	// Usage says what the setting does, for --help and the reference; the
	// default and the variable are added to it.
	Usage string
	// Default, when set, is shown instead of the target's initial value:
	// for a zero that stands for something ("0: GOMAXPROCS/2").
	Default string
	v       value
}

// Flag is the command-line flag, without its dashes: data-dir.
func (s Setting) Flag() string { return strings.ReplaceAll(s.Key, "_", "-") }

// Env is the environment variable: WISP_DATA_DIR.
func (s Setting) Env() string { return "WISP_" + strings.ToUpper(s.Key) }

// Kind names the value's type: string, duration, size, int, uint, bool,
// list, or the choices of a choice ("text|json").
func (s Setting) Kind() string { return s.v.kind() }

// Value renders the target's current value.
func (s Setting) Value() string { return s.v.String() }

// Set parses text into the target, as from a flag, a variable or the file.
func (s Setting) Set(text string) error { return s.v.set(text) }

// String is a free-form text setting.
func String(p *string, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: stringValue{p}}
}

// Duration is a time.Duration setting: 30s, 5m, 24h.
func Duration(p *time.Duration, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: durationValue{p}}
}

// Size is a positive number of bytes, with an optional KiB, MiB or GiB suffix.
func Size(p *int64, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: sizeValue{p}}
}

// Int is an integer setting.
func Int(p *int, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: intValue{p}}
}

// Uint is a non-negative integer setting.
func Uint(p *uint64, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: uintValue{p}}
}

// Bool is a true/false setting; the flag alone means true.
func Bool(p *bool, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: boolValue{p}}
}

// List is a comma-separated list (a YAML sequence in the file).
func List(p *[]string, key, usage string) Setting {
	return Setting{Key: key, Usage: usage, v: listValue{p}}
}

// Choice is one of a fixed set of words; anything else is refused where it
// is read.
func Choice(p *string, key, usage string, options ...string) Setting {
	return Setting{Key: key, Usage: usage, v: choiceValue{p, options}}
}

// WithDefault returns s showing def as its default.
func (s Setting) WithDefault(def string) Setting {
	s.Default = def
	return s
}

// LookupEnv reads one environment variable and says whether it is set:
// os.LookupEnv in the binaries, a map in tests.
type LookupEnv func(string) (string, bool)

// Table is one binary's settings.
type Table struct {
	// Program prefixes warnings: "wisp-agent".
	Program string
	// ConfigEnv is the variable that names the config file when --config
	// is not given: WISP_AGENT_CONFIG.
	ConfigEnv string
	Settings  []Setting
}

// LegacyConfigEnv is the variable every binary used to read its config
// file's path from. It is still read, with a warning, when the binary's
// own (Table.ConfigEnv) is unset.
const LegacyConfigEnv = "WISP_CONFIG"

// configFlag is the flag naming the config file.
const configFlag = "config"

// flagValue is a setting's flag: it keeps the text it was given until Load
// applies it over the file and the environment.
type flagValue struct {
	s   *Setting
	raw string
}

func (f *flagValue) String() string     { return f.raw }
func (f *flagValue) Set(v string) error { f.raw = v; return nil }
func (f *flagValue) Type() string       { return f.s.v.kind() }

// AddFlags adds --config and the flags of the settings with the given keys
// (every setting when none is given) to fs. Each flag's help shows the
// setting's default and variable.
func (t *Table) AddFlags(fs *pflag.FlagSet, keys ...string) {
	fs.String(configFlag, "", fmt.Sprintf("YAML config `file` (env %s)", t.ConfigEnv))
	for i := range t.Settings {
		s := &t.Settings[i]
		if len(keys) > 0 && indexOf(keys, s.Key) < 0 {
			continue
		}
		f := fs.VarPF(&flagValue{s: s}, s.Flag(), "", t.usage(*s))
		if s.v.kind() == "bool" {
			f.NoOptDefVal = "true"
		}
	}
	for _, k := range keys {
		if t.lookup(k) == nil {
			panic("settings: no setting " + k) // a programming error in the caller's table
		}
	}
}

func (t *Table) usage(s Setting) string {
	def := s.Default
	if def == "" {
		def = s.v.String()
	}
	return fmt.Sprintf("%s (default %s; env %s)", s.Usage, def, s.Env())
}

func (t *Table) lookup(key string) *Setting {
	for i := range t.Settings {
		if t.Settings[i].Key == key {
			return &t.Settings[i]
		}
	}
	return nil
}

func (t *Table) byEnv(name string) *Setting {
	for i := range t.Settings {
		if t.Settings[i].Env() == name {
			return &t.Settings[i]
		}
	}
	return nil
}

// Load sets the targets from the config file, then the environment, then
// the flags set on fs (fs may be nil), each over the one before; what none
// of them sets keeps the value it had (its default). Deprecation warnings
// go to warn.
func (t *Table) Load(fs *pflag.FlagSet, env LookupEnv, warn io.Writer) error {
	path, err := t.configPath(fs, env, warn)
	if err != nil {
		return err
	}
	if path != "" {
		if err := t.LoadFile(path, warn); err != nil {
			return err
		}
	}
	for _, s := range t.Settings {
		if v, ok := env(s.Env()); ok {
			if err := s.v.set(v); err != nil {
				return fmt.Errorf("%s=%q: %v", s.Env(), v, err)
			}
		}
	}
	if fs == nil {
		return nil
	}
	for _, s := range t.Settings {
		f := fs.Lookup(s.Flag())
		if f == nil || !f.Changed {
			continue
		}
		fv, ok := f.Value.(*flagValue)
		if !ok {
			return fmt.Errorf("--%s is not a setting's flag", f.Name)
		}
		if err := s.v.set(fv.raw); err != nil {
			return fmt.Errorf("--%s %q: %v", f.Name, fv.raw, err)
		}
	}
	return nil
}

// configPath is --config, else the binary's variable, else WISP_CONFIG
// (with a warning); "" for no file.
func (t *Table) configPath(fs *pflag.FlagSet, env LookupEnv, warn io.Writer) (string, error) {
	if fs != nil {
		if f := fs.Lookup(configFlag); f != nil && f.Changed {
			return f.Value.String(), nil
		}
	}
	if p, ok := env(t.ConfigEnv); ok {
		return p, nil
	}
	if p, ok := env(LegacyConfigEnv); ok && p != "" {
		fmt.Fprintf(warn, "%s: warning: %s is deprecated, use %s (it names the config file of %s only)\n",
			t.Program, LegacyConfigEnv, t.ConfigEnv, t.Program)
		return p, nil
	}
	return "", nil
}

// legacyLine is the first meaningful line of a KEY=value file.
var legacyLine = regexp.MustCompile(`^[A-Z][A-Z0-9_]*\s*=`)

// LoadFile sets the targets from one config file: YAML, or the agent's
// former KEY=value lines (with a warning).
func (t *Table) LoadFile(path string, warn io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if isLegacy(b) {
		fmt.Fprintf(warn, "%s: warning: %s has KEY=value lines, a format that is deprecated: write it as YAML (docs/configuration.md)\n", t.Program, path)
		return t.loadLegacy(path, b)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty, or only comments
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: want a mapping of keys such as %s: value", path, t.Settings[0].Key)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		s := t.lookup(k.Value)
		if s == nil {
			return fmt.Errorf("config file %s:%d: unknown key %q", path, k.Line, k.Value)
		}
		text, err := nodeText(v)
		if err == nil {
			err = s.v.set(text)
		}
		if err != nil {
			return fmt.Errorf("config file %s:%d: %s: %v", path, k.Line, k.Value, err)
		}
	}
	return nil
}

// nodeText is a YAML value as the text a flag would carry: a scalar as
// written, null as "", a sequence of scalars joined with commas.
func nodeText(n *yaml.Node) (string, error) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return "", nil
	case n.Kind == yaml.ScalarNode:
		return n.Value, nil
	case n.Kind == yaml.SequenceNode:
		var parts []string
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return "", errors.New("want a list of plain values")
			}
			parts = append(parts, e.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("want a plain value or a list")
}

func isLegacy(b []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return legacyLine.MatchString(line)
	}
	return false
}

func (t *Table) loadLegacy(path string, b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want KEY=value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		s := t.byEnv(k)
		if s == nil {
			return fmt.Errorf("%s:%d: unknown setting %s", path, n, k)
		}
		if err := s.v.set(v); err != nil {
			return fmt.Errorf("%s:%d: %s=%q: %v", path, n, k, v, err)
		}
	}
	return sc.Err()
}

// Reference writes the table as Markdown, one row per setting: flag,
// variable, file key, type, default and meaning.
func (t *Table) Reference(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| flag | environment | file key | type | default | meaning |\n|---|---|---|---|---|---|\n")
	for _, s := range t.Settings {
		def := s.Default
		if def == "" {
			def = s.v.String()
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | `%s` | %s | `%s` | %s |\n", s.Flag(), s.Env(), s.Key,
			strings.ReplaceAll(s.v.kind(), "|", `\|`), strings.ReplaceAll(def, "|", `\|`), strings.ReplaceAll(strings.ReplaceAll(s.Usage, "`", ""), "|", `\|`))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ReplaceReference returns doc with the text between the lines
// "<!-- settings:NAME -->" and "<!-- end settings:NAME -->" replaced by t's
// Reference, so a document's tables are the table itself. It fails when
// doc lacks the markers.
func (t *Table) ReplaceReference(doc []byte, name string) ([]byte, error) {
	begin, end := []byte("<!-- settings:"+name+" -->\n"), []byte("<!-- end settings:"+name+" -->")
	i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q ... %q block", begin, end)
	}
	var ref bytes.Buffer
	t.Reference(&ref)
	out := append([]byte{}, doc[:i+len(begin)]...)
	out = append(out, ref.Bytes()...)
	return append(out, doc[j:]...), nil
}

// SyncReference checks that the document at path holds t's reference table
// for name (ReplaceReference). When it does not, it rewrites the document if
// update is set and reports stale otherwise. The binaries' tests call it so
// that docs/configuration.md is always the table itself.
func (t *Table) SyncReference(path, name string, update bool) (stale bool, err error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	want, err := t.ReplaceReference(doc, name)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(doc, want) {
		return false, nil
	}
	if update {
		return false, os.WriteFile(path, want, 0o644)
	}
	return true, nil
}
