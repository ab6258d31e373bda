package settings

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// conf is a binary's config struct in small.
type conf struct {
	Listen   string
	Timeout  time.Duration
	Upload   int64
	Workers  int
	Memory   uint64
	Sync     bool
	Peers    []string
	Log      Logging
	Optional string
}

func newTable(c *conf) *Table {
	return &Table{Program: "wisp-test", ConfigEnv: "WISP_TEST_CONFIG", Settings: append([]Setting{
		String(&c.Listen, "listen", "listen `address`"),
		Duration(&c.Timeout, "timeout", "deadline"),
		Size(&c.Upload, "max_upload_bytes", "largest upload"),
		Int(&c.Workers, "workers", "workers at once").WithDefault("0: one per core"),
		Uint(&c.Memory, "memory_mib", "memory in MiB"),
		Bool(&c.Sync, "sync", "wait for fsync"),
		List(&c.Peers, "peers", "peer addresses"),
		String(&c.Optional, "optional", "empty disables"),
	}, c.Log.Settings()...)}
}

func defaults() conf {
	return conf{Listen: ":4000", Timeout: 30 * time.Second, Upload: 16 << 20, Sync: true, Optional: "on", Log: DefaultLogging()}
}

func envOf(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// load parses args into a flag set of every setting and loads c.
func load(t *testing.T, c *conf, args []string, env map[string]string) (string, error) {
	t.Helper()
	tab := newTable(c)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	tab.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	err := tab.Load(fs, envOf(env), &warn)
	return warn.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "c.yaml", "listen: ':5000'\ntimeout: 3s\nmax_upload_bytes: 1MiB\nworkers: 2\npeers: [a:1, b:2]\nsync: false\nlog_format: json\n")
	c := defaults()
	if _, err := load(t, &c, nil, nil); err != nil || c.Listen != ":4000" || c.Timeout != 30*time.Second || c.Upload != 16<<20 || !c.Sync || c.Peers != nil {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c = defaults()
	if _, err := load(t, &c, []string{"--config", file}, nil); err != nil || c.Listen != ":5000" || c.Timeout != 3*time.Second ||
		c.Upload != 1<<20 || c.Workers != 2 || !slices.Equal(c.Peers, []string{"a:1", "b:2"}) || c.Sync || c.Log.Format != "json" {
		t.Fatalf("file over defaults: %+v %v", c, err)
	}
	env := map[string]string{"WISP_TEST_CONFIG": file, "WISP_LISTEN": ":6000", "WISP_PEERS": "c:3", "WISP_MAX_UPLOAD_BYTES": "2048"}
	c = defaults()
	if _, err := load(t, &c, nil, env); err != nil || c.Listen != ":6000" || c.Timeout != 3*time.Second || c.Upload != 2048 || !slices.Equal(c.Peers, []string{"c:3"}) {
		t.Fatalf("env over file: %+v %v", c, err)
	}
	c = defaults()
	if _, err := load(t, &c, []string{"--listen", ":7000", "--sync", "--timeout=1m", "--log-level", "debug"}, env); err != nil ||
		c.Listen != ":7000" || !c.Sync || c.Timeout != time.Minute || c.Log.Level != "debug" || c.Upload != 2048 {
		t.Fatalf("flags over env: %+v %v", c, err)
	}
}

// TestEmptyEnvCounts: WISP_X= sets X to "", as --x= does; an unset
// variable leaves the default.
func TestEmptyEnvCounts(t *testing.T) {
	c := defaults()
	if _, err := load(t, &c, nil, map[string]string{"WISP_OPTIONAL": ""}); err != nil || c.Optional != "" {
		t.Fatalf("WISP_OPTIONAL= : %q %v", c.Optional, err)
	}
	c = defaults()
	if _, err := load(t, &c, []string{"--optional="}, nil); err != nil || c.Optional != "" {
		t.Fatalf("--optional= : %q %v", c.Optional, err)
	}
	file := writeFile(t, "c.yaml", "optional:\n")
	c = defaults()
	if _, err := load(t, &c, []string{"--config", file}, nil); err != nil || c.Optional != "" {
		t.Fatalf("optional: (null) in the file: %q %v", c.Optional, err)
	}
	c = defaults()
	if _, err := load(t, &c, nil, map[string]string{"WISP_TIMEOUT": ""}); err == nil || !strings.Contains(err.Error(), `WISP_TIMEOUT=""`) {
		t.Fatalf("an empty duration is an error, not the default: %v", err)
	}
}

func TestConfigFileSources(t *testing.T) {
	file := writeFile(t, "c.yaml", "listen: ':5000'\n")
	c := defaults()
	warn, err := load(t, &c, nil, map[string]string{"WISP_CONFIG": file})
	if err != nil || c.Listen != ":5000" || !strings.Contains(warn, "WISP_CONFIG is deprecated, use WISP_TEST_CONFIG") {
		t.Fatalf("WISP_CONFIG: %q %q %v", c.Listen, warn, err)
	}
	c = defaults()
	other := writeFile(t, "other.yaml", "listen: ':5001'\n")
	warn, err = load(t, &c, nil, map[string]string{"WISP_CONFIG": file, "WISP_TEST_CONFIG": other})
	if err != nil || c.Listen != ":5001" || warn != "" {
		t.Fatalf("own variable over WISP_CONFIG: %q %q %v", c.Listen, warn, err)
	}
	c = defaults()
	if _, err = load(t, &c, []string{"--config", ""}, map[string]string{"WISP_TEST_CONFIG": other}); err != nil || c.Listen != ":4000" {
		t.Fatalf("--config= reads no file: %q %v", c.Listen, err)
	}
	legacy := writeFile(t, "agent.env", "# comment\n\nWISP_LISTEN=:5002\nWISP_PEERS=\"x:1,y:2\"\n")
	c = defaults()
	warn, err = load(t, &c, []string{"--config", legacy}, nil)
	if err != nil || c.Listen != ":5002" || !slices.Equal(c.Peers, []string{"x:1", "y:2"}) || !strings.Contains(warn, "deprecated") {
		t.Fatalf("KEY=value file: %+v %q %v", c, warn, err)
	}
	c = defaults()
	if _, err = load(t, &c, []string{"--config", writeFile(t, "empty.yaml", "# nothing\n")}, nil); err != nil || c.Listen != ":4000" {
		t.Fatalf("a file of comments: %v", err)
	}
}

func TestErrorsNameTheirSource(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		env        map[string]string
		want       string
	}{
		{"unknown key", "lissen: x\n", nil, nil, `c.yaml:1: unknown key "lissen"`},
		{"bad file value", "listen: x\ntimeout: soon\n", nil, nil, "c.yaml:2: timeout: want a duration"},
		{"not a mapping", "- a\n", nil, nil, "want a mapping"},
		{"nested value", "listen: {a: b}\n", nil, nil, "want a plain value"},
		{"bad yaml", "listen: [\n", nil, nil, "c.yaml"},
		{"legacy unknown", "WISP_NOPE=1\n", nil, nil, "c.yaml:1: unknown setting WISP_NOPE"},
		{"legacy bad line", "WISP_LISTEN=1\nnope\n", nil, nil, "c.yaml:2: want KEY=value"},
		{"bad env size", "", nil, map[string]string{"WISP_MAX_UPLOAD_BYTES": "lots"}, `WISP_MAX_UPLOAD_BYTES="lots"`},
		{"zero size", "", []string{"--max-upload-bytes", "0"}, nil, `--max-upload-bytes "0": "0" is not a positive size`},
		{"bad int flag", "", []string{"--workers", "two"}, nil, `--workers "two": want an integer`},
		{"negative uint", "", nil, map[string]string{"WISP_MEMORY_MIB": "-1"}, "WISP_MEMORY_MIB"},
		{"bad bool", "", []string{"--sync=sometimes"}, nil, "--sync"},
		{"bad choice", "", []string{"--log-level", "loud"}, nil, `--log-level "loud": want debug, info, warn or error`},
		{"bad choice in env", "", nil, map[string]string{"WISP_LOG_FORMAT": "xml"}, "want text or json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", tc.file)}, args...)
			}
			c := defaults()
			if _, err := load(t, &c, args, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	c := defaults()
	if _, err := load(t, &c, []string{"--config", "/nonexistent/c.yaml"}, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestHelp: every flag shows its type, default and variable.
func TestHelp(t *testing.T) {
	c := defaults()
	tab := newTable(&c)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	tab.AddFlags(fs)
	help := fs.FlagUsages()
	for _, want := range []string{
		`--listen address`, `listen address (default ":4000"; env WISP_LISTEN)`,
		`--timeout duration`, `(default 30s; env WISP_TIMEOUT)`,
		`--max-upload-bytes size`, `(default 16MiB; env WISP_MAX_UPLOAD_BYTES)`,
		`--workers int`, `(default 0: one per core; env WISP_WORKERS)`,
		`--sync `, `(default true; env WISP_SYNC)`,
		`--peers list`, `--log-level debug|info|warn|error`, `(default info; env WISP_LOG_LEVEL)`,
		`--config file`, `(env WISP_TEST_CONFIG)`,
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	fs = pflag.NewFlagSet("subset", pflag.ContinueOnError)
	tab.AddFlags(fs, "listen")
	if fs.Lookup("listen") == nil || fs.Lookup("timeout") != nil || fs.Lookup("config") == nil {
		t.Fatalf("subset: %s", fs.FlagUsages())
	}
	var ref bytes.Buffer
	tab.Reference(&ref)
	if !strings.Contains(ref.String(), "| `--log-format` | `WISP_LOG_FORMAT` | `log_format` | text\\|json | `text` |") {
		t.Fatalf("reference:\n%s", ref.String())
	}
}

func TestReplaceReference(t *testing.T) {
	c := defaults()
	tab := newTable(&c)
	doc := []byte("# Title\n\n<!-- settings:test -->\nstale\n<!-- end settings:test -->\nafter\n")
	got, err := tab.ReplaceReference(doc, "test")
	if err != nil || !bytes.HasPrefix(got, []byte("# Title\n\n<!-- settings:test -->\n| flag |")) ||
		!bytes.HasSuffix(got, []byte("| `--log-format` | `WISP_LOG_FORMAT` | `log_format` | text\\|json | `text` | log line format: text (key=value) or json |\n<!-- end settings:test -->\nafter\n")) {
		t.Fatalf("%s %v", got, err)
	}
	if again, _ := tab.ReplaceReference(got, "test"); !bytes.Equal(again, got) {
		t.Fatalf("not idempotent:\n%s", again)
	}
	if _, err := tab.ReplaceReference(doc, "other"); err == nil {
		t.Fatal("a missing block was accepted")
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1024": 1024, "3B": 3, "16MiB": 16 << 20, " 2 GiB ": 2 << 30, "1536KiB": 1536 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1TiB", "2048GiB", "lots", "1.5MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	for n, want := range map[int64]string{1000: "1000", 1024: "1KiB", 16 << 20: "16MiB", 1 << 30: "1GiB", 1536 << 10: "1536KiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", time.Minute: "1m", 168 * time.Hour: "168h", 90 * time.Minute: "1h30m",
		time.Hour + time.Second: "1h0m1s", 2500 * time.Millisecond: "2.5s", 100 * time.Millisecond: "100ms", 10 * time.Minute: "10m"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", d, back, err)
		}
	}
}

func TestDoubleDash(t *testing.T) {
	in := []string{"-listen", ":1", "-data-dir=x", "--log-level", "info", "-h", "-v", "-1h", "-", "file.wasm", "--", "-keep"}
	want := []string{"--listen", ":1", "--data-dir=x", "--log-level", "info", "-h", "-v", "-1h", "-", "file.wasm", "--", "-keep"}
	if got := DoubleDash(in); !slices.Equal(got, want) {
		t.Fatalf("DoubleDash = %q, want %q", got, want)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	Logging{Level: "warn", Format: "json"}.Logger(&buf).Info("hidden")
	Logging{Level: "warn", Format: "json"}.Logger(&buf).Warn("shown", "k", 1)
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown","k":1`) {
		t.Fatalf("json at warn: %q", s)
	}
	buf.Reset()
	DefaultLogging().Logger(&buf).Debug("hidden")
	DefaultLogging().Logger(&buf).Info("shown")
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "level=INFO msg=shown") {
		t.Fatalf("text at info: %q", s)
	}
}

// TestExecute: exit codes and what is printed for each kind of error.
func TestExecute(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		err     error
		code    int
		wantErr string
	}{
		{"ok", nil, nil, ExitOK, ""},
		{"failed", nil, errors.New("boom"), ExitError, "prog: boom\n"},
		{"logged", nil, Logged(errors.New("boom")), ExitError, ""},
		{"setting", nil, UsageError(errors.New("bad setting")), ExitUsage, "prog: bad setting\n"},
		{"unknown flag", []string{"--nope"}, nil, ExitUsage, "prog: unknown flag: --nope (see 'prog --help')\n"},
		{"unknown command", []string{"nope"}, nil, ExitUsage, `prog: unknown command "nope" for "prog"` + "\n"},
		{"group alone", []string{"grp"}, nil, ExitUsage, "prog: prog grp needs a command (see 'prog grp --help')\n"},
		{"help", []string{"--help"}, nil, ExitOK, ""},
		{"single dash", []string{"-long-flag", "x"}, nil, ExitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			root := Server(&cobra.Command{Use: "prog", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return tc.err }})
			root.Flags().String("long-flag", "", "")
			root.AddCommand(Group("grp", "a group"))
			if code := Execute(t.Context(), root, tc.args, &out, &errb); code != tc.code || errb.String() != tc.wantErr {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, errb.String(), tc.code, tc.wantErr)
			}
		})
	}
}
