package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testproc"
)

// TestBinary runs the built binary: --help exits 0 on the root and on a
// command and shows flags with their defaults; version prints the version
// and the revision the build recorded.
func TestBinary(t *testing.T) {
	bin := testproc.Build(t, ".")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage:", "version", "--config string", "WISP_CLI_CONFIG", `--output string`, `(default "text")`}},
		{[]string{"fn", "invoke", "--help"}, []string{"--host string", "WISP_HOST"}},
		{[]string{"dev", "--help"}, []string{`--listen string`, `(default "127.0.0.1:4000")`}},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		if err != nil {
			t.Errorf("wisp %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("wisp %s lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
	testproc.CheckVersion(t, bin, "wisp")
}
