package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.env")
	os.WriteFile(file, []byte("# comment\nWISP_CONTROLLERS=file:4433\nWISP_AGENT_NAME=from-file\nWISP_TIMEOUT=3s\nWISP_LABELS=zone=a\n"), 0o600)
	env := map[string]string{"WISP_CONFIG": file, "WISP_AGENT_NAME": "from-env", "WISP_MEMORY_MIB": "64"}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := loadConfig([]string{"-memory-mib", "32", "-labels", "zone=b,rack=7"}, func(k string) string { return env[k] }, fs)
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
	fs = flag.NewFlagSet("run", flag.ContinueOnError)
	c, err = loadConfig([]string{"-controllers", "x:1"}, func(k string) string { return map[string]string{"WISP_LOCAL_API_SYNC": "false"}[k] }, fs)
	if err != nil || c.LocalAPISync || !c.node().LocalAPIUnsynced {
		t.Fatalf("WISP_LOCAL_API_SYNC=false: %v %+v", err, c)
	}
}

func TestConfigSlotBounds(t *testing.T) {
	env := map[string]string{"WISP_MAX_QUEUED_PER_FUNCTION": "7", "WISP_MAX_PER_FUNCTION": "5"}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := loadConfig([]string{"-controllers", "x:1", "-max-per-function", "3"}, func(k string) string { return env[k] }, fs)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.node(); n.MaxPerFunction != 3 || n.MaxQueuedPerFunction != 7 {
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
		"stray argument": {[]string{"-controllers", "x:1", "extra"}, nil, "unexpected arguments"},
		"bad sync":       {[]string{"-controllers", "x:1", "-local-api-sync", "sometimes"}, nil, "WISP_LOCAL_API_SYNC"},
		"negative cap":   {[]string{"-controllers", "x:1", "-max-per-function", "-1"}, nil, "instance slot bounds"},
		"negative queue": {[]string{"-controllers", "x:1"}, map[string]string{"WISP_MAX_QUEUED_PER_FUNCTION": "-2"}, "instance slot bounds"},
		"bad cap":        {[]string{"-controllers", "x:1", "-max-per-function", "two"}, nil, "WISP_MAX_PER_FUNCTION"},
	} {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			_, err := loadConfig(tc.args, func(k string) string { return tc.env[k] }, fs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
