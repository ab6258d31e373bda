package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/wispfn/wisp/internal/settings"
)

// load is loadConfig over a command line of run's flags and the variables of env.
func load(args []string, env map[string]string) (config, error) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addFlags(fs)
	if err := fs.Parse(settings.DoubleDash(args)); err != nil {
		return config{}, err
	}
	return loadConfig(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
}

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.env")
	os.WriteFile(file, []byte("# comment\nWISP_CONTROLLERS=file:4433\nWISP_AGENT_NAME=from-file\nWISP_TIMEOUT=3s\nWISP_LABELS=zone=a\n"), 0o600)
	env := map[string]string{"WISP_AGENT_CONFIG": file, "WISP_AGENT_NAME": "from-env", "WISP_MEMORY_MIB": "64"}
	c, err := load([]string{"-memory-mib", "32", "-labels", "zone=b,rack=7"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Controllers, []string{"file:4433"}) || c.Name != "from-env" || c.MemoryMiB != 32 ||
		c.Timeout != 3*time.Second || !slices.Equal(c.Labels, []string{"zone=b", "rack=7"}) || c.DataDir != "wisp-agent-data" {
		t.Fatalf("%+v", c)
	}
	if !c.LocalAPISync || c.node().LocalAPIUnsynced {
		t.Fatal("the local API must wait for the outbox fsync by default")
	}
	c, err = load([]string{"-controllers", "x:1"}, map[string]string{"WISP_LOCAL_API_SYNC": "false"})
	if err != nil || c.LocalAPISync || !c.node().LocalAPIUnsynced {
		t.Fatalf("WISP_LOCAL_API_SYNC=false: %v %+v", err, c)
	}
}

func TestConfigSlotBounds(t *testing.T) {
	env := map[string]string{"WISP_MAX_QUEUED_PER_FUNCTION": "7", "WISP_MAX_PER_FUNCTION": "5"}
	c, err := load([]string{"-controllers", "x:1", "-max-per-function", "3", "-log-max-lines", "7", "-log-max-bytes", "4KiB"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.node(); n.MaxPerFunction != 3 || n.MaxQueuedPerFunction != 7 || n.LogMaxLines != 7 || n.LogMaxBytes != 4<<10 {
		t.Fatalf("flag over env: %+v", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no controller":  {nil, nil, "no controller address"},
		"bad label":      {[]string{"-controllers", "x:1", "-labels", "novalue"}, nil, "want key=value"},
		"bad duration":   {[]string{"-controllers", "x:1"}, map[string]string{"WISP_TIMEOUT": "soon"}, "WISP_TIMEOUT"},
		"bad engine":     {[]string{"-controllers", "x:1", "-engine", "jit"}, nil, "engine"},
		"missing config": {[]string{"-config", "/nonexistent/agent.env"}, nil, "no such file"},
		"bad sync":       {[]string{"-controllers", "x:1", "-local-api-sync=sometimes"}, nil, "--local-api-sync"},
		"negative cap":   {[]string{"-controllers", "x:1", "-max-per-function", "-1"}, nil, "instance slot bounds"},
		"negative queue": {[]string{"-controllers", "x:1"}, map[string]string{"WISP_MAX_QUEUED_PER_FUNCTION": "-2"}, "instance slot bounds"},
		"bad cap":        {[]string{"-controllers", "x:1", "-max-per-function", "two"}, nil, "--max-per-function"},
		"bad sync env":   {[]string{"-controllers", "x:1"}, map[string]string{"WISP_LOCAL_API_SYNC": "sometimes"}, "WISP_LOCAL_API_SYNC"},
		"bad limits":     {[]string{"-controllers", "x:1", "-module-limits", "nope=1"}, nil, "nope"},
		"no log lines":   {[]string{"-controllers", "x:1", "-log-max-lines", "0"}, nil, "log max lines 0"},
		"huge log":       {[]string{"-controllers", "x:1"}, map[string]string{"WISP_LOG_MAX_BYTES": "2MiB"}, "log max bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// TestConfigFiles: the YAML file, the former KEY=value file (with a
// warning) and the former WISP_CONFIG variable (with a warning) all work;
// an empty variable turns a listener off.
func TestConfigFiles(t *testing.T) {
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "agent.yaml")
	os.WriteFile(yamlFile, []byte("controllers: [a:4433, b:4433]\nlabels: zone=a,rack=1\nlocal_api_sync: false\nmetrics_addr: ''\nlog_format: json\n"), 0o600)
	envFile := filepath.Join(dir, "agent.env")
	os.WriteFile(envFile, []byte("WISP_CONTROLLERS=a:4433,b:4433\nWISP_LABELS=zone=a,rack=1\nWISP_LOCAL_API_SYNC=false\nWISP_METRICS_ADDR=\nWISP_LOG_FORMAT=json\n"), 0o600)
	for _, tc := range []struct {
		name     string
		env      map[string]string
		wantWarn string
	}{
		{"yaml", map[string]string{"WISP_AGENT_CONFIG": yamlFile}, ""},
		{"KEY=value", map[string]string{"WISP_AGENT_CONFIG": envFile}, "KEY=value lines, a format that is deprecated"},
		{"WISP_CONFIG", map[string]string{"WISP_CONFIG": yamlFile}, "WISP_CONFIG is deprecated, use WISP_AGENT_CONFIG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warn bytes.Buffer
			c, err := loadConfig(nil, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, &warn)
			if err != nil || !slices.Equal(c.Controllers, []string{"a:4433", "b:4433"}) || !slices.Equal(c.Labels, []string{"zone=a", "rack=1"}) ||
				c.LocalAPISync || c.MetricsAddr != "" || c.LocalAPI != "127.0.0.1:4080" || c.Log.Format != "json" {
				t.Fatalf("%+v %v", c, err)
			}
			if (tc.wantWarn == "") != (warn.Len() == 0) || !strings.Contains(warn.String(), tc.wantWarn) {
				t.Fatalf("warnings %q, want %q", warn.String(), tc.wantWarn)
			}
		})
	}
	c, err := load([]string{"--controllers", "x:1"}, map[string]string{"WISP_LOCAL_API": "", "WISP_MQTT_BROKER": ""})
	if err != nil || c.node().LocalAPI != "" || c.node().MQTTBroker != "" {
		t.Fatalf("WISP_LOCAL_API= WISP_MQTT_BROKER=: %+v %v", c.node(), err)
	}
	c, err = load([]string{"--controllers", "x:1", "--local-api", "127.0.0.1:9"}, map[string]string{"WISP_LOCAL_API": ""})
	if err != nil || c.LocalAPI != "127.0.0.1:9" {
		t.Fatalf("the flag over WISP_LOCAL_API=: %q %v", c.LocalAPI, err)
	}
}

// TestJoinTokenFile: the token can come from a file, so that it is on no
// command line; a missing file is only a warning (the agent may have joined
// already), an empty or oversized one and a token set twice are errors, and
// a token given as a flag draws a warning.
func TestJoinTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "join")
	if err := os.WriteFile(file, []byte("wispjoin1.abc.def\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--controllers", "127.0.0.1:4433"}
	c, err := load(append(base, "--join-token-file", file), nil)
	if err != nil || c.JoinToken != "wispjoin1.abc.def" {
		t.Fatalf("from a file: %q %v", c.JoinToken, err)
	}
	c, err = load(base, map[string]string{"WISP_JOIN_TOKEN_FILE": file})
	if err != nil || c.JoinToken != "wispjoin1.abc.def" {
		t.Fatalf("file named by WISP_JOIN_TOKEN_FILE: %q %v", c.JoinToken, err)
	}
	if _, err := load(append(base, "--join-token-file", file), map[string]string{"WISP_JOIN_TOKEN": "x"}); err == nil || !strings.Contains(err.Error(), "keep one") {
		t.Fatalf("token set twice: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if _, err := load(append(base, "--join-token-file", empty), nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 5000), 0o600)
	if _, err := load(append(base, "--join-token-file", big), nil); err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("oversized file: %v", err)
	}

	var warn strings.Builder
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	addFlags(fs)
	fs.Parse(append(base, "--join-token-file", filepath.Join(dir, "missing")))
	c, err = loadConfig(fs, func(string) (string, bool) { return "", false }, &warn)
	if err != nil || c.JoinToken != "" || !strings.Contains(warn.String(), "does not exist") {
		t.Fatalf("missing file: %q %v, warnings %q", c.JoinToken, err, warn.String())
	}
	warn.Reset()
	fs = pflag.NewFlagSet("run", pflag.ContinueOnError)
	addFlags(fs)
	fs.Parse(append(base, "--join-token", "wispjoin1.x.y"))
	if _, err := loadConfig(fs, func(string) (string, bool) { return "", false }, &warn); err != nil || !strings.Contains(warn.String(), "visible to every local user") {
		t.Fatalf("token as a flag: %v, warnings %q", err, warn.String())
	}
}
