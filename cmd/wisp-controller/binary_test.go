package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testproc"
)

// TestBinaryHelpAndVersion runs the built binary: every command's --help
// exits 0 and shows the typed flags with their defaults and variables;
// version prints the version and the revision the build recorded.
func TestBinaryHelpAndVersion(t *testing.T) {
	t.Parallel()
	bin := testproc.Build(t, ".")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage:", "run", "token", "compact", "version",
			`--listen address`, `(default ":4000"; env WISP_LISTEN)`, `--invoke-timeout duration`, `(default 30s; env WISP_INVOKE_TIMEOUT)`,
			`--max-upload-bytes size`, `(default 16MiB; env WISP_MAX_UPLOAD_BYTES)`, `--activation-retention duration`, `(default 168h;`,
			`--activation-max-count N`, `(default 100000;`, `--log-level debug|info|warn|error`, `--log-format text|json`,
			`--config file`, `WISP_CONTROLLER_CONFIG`}},
		{[]string{"run", "--help"}, []string{"wisp-controller run [flags]", `(default ":4433"; env WISP_QUIC_LISTEN)`, "--compile-memory size"}},
		{[]string{"token", "create", "--help"}, []string{"--ttl duration", "--uses int", "--url address", "--data-dir dir", `(default "./wisp-data"; env WISP_DATA_DIR)`, "--database-url DSN"}},
		{[]string{"token", "--help"}, []string{"create"}},
		{[]string{"compact", "--help"}, []string{"--data-dir dir", "--config file"}},
		{[]string{"help", "token", "create"}, []string{"--ttl duration"}},
		{[]string{"healthcheck", "--help"}, []string{"wisp-controller healthcheck [flags]", "--live", "--url URL", "--metrics-addr address", "--tls auto|off"}},
		{[]string{"--help"}, []string{"healthcheck"}},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		if err != nil {
			t.Errorf("wisp-controller %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("wisp-controller %s lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}

	testproc.CheckVersion(t, bin, "wisp-controller")
}
