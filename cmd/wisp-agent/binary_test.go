package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testproc"
	"github.com/wispfn/wisp/protocol"
)

// TestBinary runs the built binary: every command's --help exits 0 and
// shows the typed flags with their defaults and variables; version prints
// the version and the revision the build recorded; WISP_LOCAL_API= turns
// the local API off.
func TestBinary(t *testing.T) {
	bin := testproc.Build(t, ".")
	t.Run("help", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--help"}, []string{"Usage:", "run", "invoke", "version", "WISP_AGENT_CONFIG",
				"--controllers host:port,...", "(default \"\"; env WISP_CONTROLLERS)", "--local-api address", `(default "127.0.0.1:4080"; env WISP_LOCAL_API)`,
				"--local-api-sync ", "(default true; env WISP_LOCAL_API_SYNC)", "--timeout duration", "--memory-mib MiB", "(default 128; env WISP_MEMORY_MIB)",
				"--engine auto|compiler|interpreter", "(default auto; env WISP_ENGINE)", "--log-level debug|info|warn|error", "--log-format text|json",
				"--max-concurrent int", "(default 0: 8 × GOMAXPROCS; env WISP_MAX_CONCURRENT)"}},
			{[]string{"run", "--help"}, []string{"wisp-agent run [flags]", "--controllers host:port,...", "--agent-name name", "--labels key=value,..."}},
			{[]string{"invoke", "--help"}, []string{"wisp-agent invoke [flags] <file.wasm>", "--timeout duration", "--engine auto|compiler|interpreter", "--allow-hosts hosts", "--env NAME=value"}},
			{[]string{"status", "--help"}, []string{"wisp-agent status [flags]", "--output format", "--data-dir dir", "--local-api address", "--wait duration"}},
			{[]string{"healthcheck", "--help"}, []string{"wisp-agent healthcheck [flags]", "--live", "--url URL", "--metrics-addr address"}},
			{[]string{"--help"}, []string{"status", "healthcheck", "--ready-requires-link", "(default false; env WISP_READY_REQUIRES_LINK)"}},
			{[]string{"help"}, []string{"Available Commands:", "  run "}},
			{[]string{"help", "run"}, []string{"--data-dir dir"}},
		} {
			out, err := exec.Command(bin, tc.args...).CombinedOutput()
			if err != nil {
				t.Errorf("wisp-agent %s: %v\n%s", strings.Join(tc.args, " "), err, out)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("wisp-agent %s lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
				}
			}
		}
	})

	t.Run("version", func(t *testing.T) { testproc.CheckVersion(t, bin, "wisp-agent") })

	// The agent logs "local invoke API" right after "agent running" when it
	// serves one; with WISP_LOCAL_API= it must not, and the same run with an
	// address shows the test can see it.
	t.Run("WISP_LOCAL_API empty", func(t *testing.T) {
		for _, tc := range []struct {
			localAPI string
			serves   bool
		}{{"", false}, {"127.0.0.1:0", true}} {
			// A controller nobody answers at: the agent keeps dialing.
			token := protocol.JoinToken{Secret: make([]byte, 32)}.String()
			env := []string{"WISP_LOCAL_API=" + tc.localAPI, "WISP_CONTROLLERS=127.0.0.1:9", "WISP_JOIN_TOKEN=" + token, "WISP_DATA_DIR=" + t.TempDir(),
				"WISP_METRICS_ADDR=", "WISP_MQTT_BROKER=", "WISP_AGENT_CONFIG=", "WISP_CONFIG="}
			p := testproc.Start(t, "wisp-agent", bin, env, "run")
			p.Await("agent running")
			p.Stop()
			if got := strings.Contains(p.Log(), "local invoke API"); got != tc.serves {
				t.Errorf("WISP_LOCAL_API=%q: local API served %v, want %v:\n%s", tc.localAPI, got, tc.serves, p.Log())
			}
		}
	})
}
