package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/api"
	"github.com/wispfn/wisp/internal/settings"
	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// envFrom is an environment of m's variables only.
func envFrom(m map[string]string) settings.LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// loadArgs is loadConfig over a command line of settings flags.
func loadArgs(args []string, env settings.LookupEnv) (config, error) {
	fs := pflag.NewFlagSet("wisp-controller", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := defaults()
	def.table().AddFlags(fs)
	if err := fs.Parse(settings.DoubleDash(args)); err != nil {
		return config{}, err
	}
	return loadConfig(fs, env, io.Discard)
}

// startController runs the controller with args and env until the returned
// stop is called; stop returns the exit code. The REST API is plain HTTP
// (WISP_TLS=off) unless env or args choose TLS; base is then https://.
func startController(t *testing.T, args []string, env map[string]string) (base string, logs *syncBuffer, stop func() int) {
	t.Helper()
	scheme := "https://"
	if _, ok := env["WISP_TLS"]; !ok && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(strings.TrimLeft(a, "-"), "tls") }) {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["WISP_TLS"] = "off"
	}
	if env["WISP_TLS"] == "off" || slices.Contains(args, "off") {
		scheme = "http://"
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	addrc := make(chan net.Addr, 1)
	codec := make(chan int, 1)
	go func() {
		codec <- runWith(ctx, args, deps{env: envFrom(env), stdout: io.Discard, stderr: logs, ready: func(a net.Addr) { addrc <- a }})
	}()
	select {
	case a := <-addrc:
		base = scheme + a.String()
	case code := <-codec:
		cancel()
		t.Fatalf("controller exited with %d before serving:\n%s", code, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("controller did not start:\n%s", logs)
	}
	var once sync.Once
	var code int
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-codec:
			case <-time.After(20 * time.Second):
				t.Errorf("controller did not stop:\n%s", logs)
				code = -1
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return base, logs, stop
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	code, b := testhttp.Do(t, "GET", url, token, "", nil)
	return code, string(b)
}

func TestRunEmbeddedAndRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"WISP_DATA_DIR": dir, "WISP_LISTEN": "127.0.0.1:0", "WISP_QUIC_LISTEN": "127.0.0.1:0"}
	base, logs, stop := startController(t, nil, env)

	tokenFile := filepath.Join(dir, "admin.token")
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), tokenFile) {
		t.Fatalf("the log does not say where the admin token is:\n%s", logs)
	}
	raw, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(raw))
	if strings.Contains(logs.String(), token) {
		t.Fatal("the admin token was logged")
	}
	if code, body := get(t, base+"/v1/", ""); code != 200 || !strings.Contains(body, "up and running") {
		t.Fatalf("GET /v1/ = %d %q", code, body)
	}
	if code, _ := get(t, base+"/v1/fn", ""); code != 401 {
		t.Fatalf("GET /v1/fn without token = %d", code)
	}
	if code, body := get(t, base+"/v1/fn", token); code != 200 || body != `{"data":[{"name":"_"}]}` {
		t.Fatalf("GET /v1/fn = %d %q", code, body)
	}
	if code, _ := get(t, base+"/metrics", ""); code != 401 {
		t.Fatalf("GET /metrics without token = %d, want 401", code)
	}
	if code, body := get(t, base+"/metrics", token); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics = %d", code)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "controller.db")); err != nil {
		t.Fatalf("embedded store: %v", err)
	}

	// A second start reuses the admin: same file, same token, still valid.
	base, logs, stop = startController(t, []string{"-listen", "127.0.0.1:0", "-quic-listen", "127.0.0.1:0"}, map[string]string{"WISP_DATA_DIR": dir})
	raw2, _ := os.ReadFile(tokenFile)
	if string(raw2) != string(raw) {
		t.Fatal("the second start rewrote admin.token")
	}
	if !strings.Contains(logs.String(), "admin subject exists") {
		t.Fatalf("second start log:\n%s", logs)
	}
	if code, _ := get(t, base+"/v1/admin/subjects", token); code != 200 {
		t.Fatalf("admin token after restart: %d", code)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestRunPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	dir := t.TempDir()
	base, logs, stop := startController(t, []string{"-database-url", dsn, "-data-dir", dir, "-listen", "127.0.0.1:0", "-quic-listen", "127.0.0.1:0"}, nil)
	raw, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/v1/fn", strings.TrimSpace(string(raw))); code != 200 || body != `{"data":[{"name":"_"}]}` {
		t.Fatalf("GET /v1/fn = %d %q", code, body)
	}
	if !strings.Contains(logs.String(), "store: postgres") {
		t.Fatalf("log:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "controller.db")); !os.IsNotExist(err) {
		t.Fatalf("an embedded store was created next to Postgres: %v", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestRunBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad flag", []string{"-nope"}, nil, "unknown flag: --nope"},
		{"bad env size", nil, map[string]string{"WISP_MAX_UPLOAD_BYTES": "lots"}, "WISP_MAX_UPLOAD_BYTES"},
		{"bad flag size", []string{"-max-upload-bytes", "-1"}, nil, "max-upload-bytes"},
		{"extra args", []string{"serve", "now"}, nil, `unknown command "serve"`},
		{"extra args after run", []string{"run", "now"}, nil, `unknown command "now" for "wisp-controller run"`},
		{"empty duration in env", nil, map[string]string{"WISP_INVOKE_TIMEOUT": ""}, `WISP_INVOKE_TIMEOUT=""`},
		{"bad level", []string{"-log-level", "loud"}, nil, "log-level"},
		{"missing config file", []string{"-config", "/nonexistent/wisp.yaml"}, nil, "config file"},
		{"negative retention", []string{"-activation-retention", "-1h"}, nil, "activation retention"},
		{"negative max count", nil, map[string]string{"WISP_ACTIVATION_MAX_COUNT": "-5"}, "activation max count"},
		{"bad max per function", nil, map[string]string{"WISP_ACTIVATION_MAX_PER_FUNCTION": "many"}, "WISP_ACTIVATION_MAX_PER_FUNCTION"},
		{"zero output bound", []string{"-activation-max-output-bytes", "0"}, nil, "activation-max-output-bytes"},
		{"huge message bound", []string{"-activation-max-message-bytes", "2MiB"}, nil, "activation max message bytes"},
		{"no log lines", []string{"-activation-max-log-lines", "0"}, nil, "activation max log lines 0"},
		{"huge log bound", []string{"-activation-max-log-bytes", "2MiB"}, nil, "activation max log bytes"},
		{"prune interval too short", []string{"-activation-prune-interval", "1ms"}, nil, "activation prune interval"},
		{"bad default allow host", []string{"--default-allow-hosts", "ok.test,bad host"}, nil, `default allow hosts: "bad host"`},
		{"bad default allow host in env", nil, map[string]string{"WISP_DEFAULT_ALLOW_HOSTS": "*.com"}, `default allow hosts: "*.com"`},
		{"bad default allow port", []string{"--default-allow-hosts", "a.test:0"}, nil, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := runWith(context.Background(), tc.args, deps{env: envFrom(tc.env), stdout: io.Discard, stderr: &stderr})
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("code %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "wisp.yaml")
	os.WriteFile(file, []byte("listen: ':5000'\ndata_dir: /from/file\nmax_upload_bytes: 1024\nshutdown_timeout: 3s\n"), 0o600)

	cfg, err := loadArgs(nil, envFrom(nil))
	if err != nil || cfg.Listen != ":4000" || cfg.DataDir != "./wisp-data" || cfg.MaxUploadBytes != api.DefaultMaxUploadBytes || cfg.DatabaseURL != "" {
		t.Fatalf("defaults = %+v, %v", cfg, err)
	}
	cfg, err = loadArgs([]string{"-config", file}, envFrom(nil))
	if err != nil || cfg.Listen != ":5000" || cfg.DataDir != "/from/file" || cfg.MaxUploadBytes != 1024 || cfg.ShutdownTimeout != 3*time.Second {
		t.Fatalf("file = %+v, %v", cfg, err)
	}
	env := map[string]string{"WISP_CONTROLLER_CONFIG": file, "WISP_LISTEN": ":6000", "WISP_MAX_UPLOAD_BYTES": "2MiB", "WISP_DATABASE_URL": "postgres://x"}
	cfg, err = loadArgs(nil, envFrom(env))
	if err != nil || cfg.Listen != ":6000" || cfg.DataDir != "/from/file" || cfg.MaxUploadBytes != 2<<20 || cfg.DatabaseURL != "postgres://x" {
		t.Fatalf("env = %+v, %v", cfg, err)
	}
	cfg, err = loadArgs([]string{"-listen", ":7000", "-max-upload-bytes", "512KiB", "-database-url", ""}, envFrom(env))
	if err != nil || cfg.Listen != ":7000" || cfg.MaxUploadBytes != 512<<10 || cfg.DatabaseURL != "" {
		t.Fatalf("flags = %+v, %v", cfg, err)
	}
	if _, err := loadArgs([]string{"-config", file}, envFrom(nil)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, []byte("lissen: ':5000'\n"), 0o600)
	if _, err := loadArgs([]string{"-config", file}, envFrom(nil)); err == nil || !strings.Contains(err.Error(), "lissen") {
		t.Fatalf("unknown key in config file: %v", err)
	}
}

func TestLoadConfigActivationBounds(t *testing.T) {
	t.Parallel()
	cfg, err := loadArgs(nil, envFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	def := activations.DefaultRetention
	if cfg.ActivationMaxOutputBytes != activations.DefaultOutputBytes || cfg.ActivationMaxMessageBytes != activations.DefaultMessageBytes ||
		cfg.ActivationMaxLogLines != activations.DefaultLogLines || cfg.ActivationMaxLogBytes != activations.DefaultLogBytes ||
		cfg.ActivationRetention != def.MaxAge || cfg.ActivationMaxCount != def.MaxCount || cfg.ActivationMaxPerFunction != def.MaxPerFunction {
		t.Fatalf("defaults = %+v", cfg)
	}
	file := filepath.Join(t.TempDir(), "wisp.yaml")
	os.WriteFile(file, []byte("activation_retention: 24h\nactivation_max_count: 50\nactivation_max_output_bytes: 1024\n"), 0o600)
	env := map[string]string{"WISP_CONTROLLER_CONFIG": file, "WISP_ACTIVATION_MAX_COUNT": "0", "WISP_ACTIVATION_MAX_MESSAGE_BYTES": "1KiB", "WISP_ACTIVATION_MAX_LOG_BYTES": "2KiB"}
	cfg, err = loadArgs([]string{"-activation-max-per-function", "7", "-activation-retention", "0", "-activation-prune-interval", "2s", "-activation-max-log-lines", "9"}, envFrom(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ActivationRetention != 0 || cfg.ActivationMaxCount != 0 || cfg.ActivationMaxPerFunction != 7 ||
		cfg.ActivationMaxOutputBytes != 1024 || cfg.ActivationMaxMessageBytes != 1024 {
		t.Fatalf("file < env < flags, 0 disabling: %+v", cfg)
	}
	sc := cfg.server()
	if sc.ActivationRetention != (activations.Retention{MaxPerFunction: 7}) || sc.ActivationBounds != (activations.Bounds{OutputBytes: 1024, MessageBytes: 1024, LogLines: 9, LogBytes: 2048}) ||
		sc.PruneInterval != 2*time.Second {
		t.Fatalf("server config: %+v %+v", sc.ActivationRetention, sc.ActivationBounds)
	}
}

// TestConfigVariables: WISP_CONTROLLER_CONFIG names the file; the former
// WISP_CONFIG still does, with a warning; an empty variable counts.
func TestConfigVariables(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "controller.yaml")
	os.WriteFile(file, []byte("database_url: postgres://file\nlisten: ':5000'\n"), 0o600)
	var warn bytes.Buffer
	cfg, err := loadConfig(nil, envFrom(map[string]string{"WISP_CONFIG": file}), &warn)
	if err != nil || cfg.DatabaseURL != "postgres://file" || !strings.Contains(warn.String(), "WISP_CONFIG is deprecated, use WISP_CONTROLLER_CONFIG") {
		t.Fatalf("WISP_CONFIG: %+v %v %q", cfg, err, warn.String())
	}
	warn.Reset()
	cfg, err = loadConfig(nil, envFrom(map[string]string{"WISP_CONTROLLER_CONFIG": file, "WISP_DATABASE_URL": ""}), &warn)
	if err != nil || cfg.DatabaseURL != "" || cfg.Listen != ":5000" || warn.Len() != 0 {
		t.Fatalf("WISP_DATABASE_URL= over the file: %+v %v %q", cfg, err, warn.String())
	}
}

// TestDefaultAllowHosts: the default egress allowlist is read from the
// flag or the environment, checked, lowercased, and reaches the server.
func TestDefaultAllowHosts(t *testing.T) {
	t.Parallel()
	cfg, err := loadArgs(nil, envFrom(map[string]string{"WISP_DEFAULT_ALLOW_HOSTS": "API.test:443,*.Example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.server().DefaultAllowHosts; !slices.Equal(got, []string{"api.test:443", "*.example.com"}) {
		t.Fatalf("DefaultAllowHosts = %q", got)
	}
	cfg, err = loadArgs(nil, envFrom(nil))
	if err != nil || len(cfg.server().DefaultAllowHosts) != 0 {
		t.Fatalf("default: %q %v, want none (deny)", cfg.server().DefaultAllowHosts, err)
	}
}
