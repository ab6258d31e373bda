package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretCommands: wisp secret set (stdin, --from-file), list, delete
// against a real controller; the value is never an argument, never in an
// answer the CLI prints, nor in the controller's log (at debug level).
func TestSecretCommands(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls", "off", "--log-level", "debug")
	url := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the controller's secrets key: %v %v", fi, err)
	}
	e := env{"XDG_CONFIG_HOME": t.TempDir(), "WISP_HOST": url, "WISP_TOKEN": strings.TrimSpace(string(admin))}
	const value = "cli-S3CRET-value-0b7e"
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr, e.get)
		return code, stdout.String(), stderr.String()
	}
	ok := func(stdin string, args ...string) string {
		t.Helper()
		code, stdout, stderr := run(stdin, args...)
		if code != 0 {
			t.Fatalf("wisp %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		if strings.Contains(stdout+stderr, value) {
			t.Fatalf("wisp %s printed the value", strings.Join(args, " "))
		}
		return stdout
	}
	fails := func(want string, stdin string, args ...string) {
		t.Helper()
		code, stdout, stderr := run(stdin, args...)
		if code == 0 || stdout != "" || !strings.Contains(stderr, want) || strings.Contains(stderr, value) {
			t.Fatalf("wisp %s: exit %d, stdout %q, stderr %q; want a failure saying %q", strings.Join(args, " "), code, stdout, stderr, want)
		}
	}

	ok("", "mod", "create", "m")
	if out := ok(value+"\n", "secret", "set", "m", "API_KEY"); out != "set secret API_KEY of module m\n" {
		t.Fatalf("secret set: %q", out)
	}
	file := filepath.Join(t.TempDir(), "v")
	os.WriteFile(file, []byte(value+"-file"), 0o600)
	ok("", "secret", "set", "m", "FROM_FILE", "--from-file", file)
	out := ok("", "secret", "list", "m")
	if !strings.Contains(out, "NAME       UPDATED\nAPI_KEY") || !strings.Contains(out, "FROM_FILE") {
		t.Fatalf("secret list:\n%s", out)
	}
	var items []map[string]any
	if err := json.Unmarshal([]byte(ok("", "secret", "list", "m", "-o", "json")), &items); err != nil || len(items) != 2 || len(items[0]) != 2 {
		t.Fatalf("secret list -o json: %v %v", items, err)
	}

	fails("want <module> <name>", "", "secret", "set", "m", "K", value) // never as an argument
	fails("invalid secret name", "x", "secret", "set", "m", "1BAD")
	fails("over 16384 bytes", strings.Repeat("x", 16<<10+1), "secret", "set", "m", "BIG")
	fails("no such file", "", "secret", "set", "m", "K", "--from-file", filepath.Join(t.TempDir(), "none"))
	fails("not found", "x", "secret", "set", "nope", "K")
	fails("Secret NOPE not found in module m", "", "secret", "delete", "m", "NOPE")

	if out := ok("", "secret", "delete", "m", "FROM_FILE"); out != "deleted secret FROM_FILE of module m\n" {
		t.Fatalf("secret delete: %q", out)
	}
	if out := ok("", "secret", "list", "m"); strings.Contains(out, "FROM_FILE") {
		t.Fatalf("after delete:\n%s", out)
	}
	raw, _ := os.ReadFile(filepath.Join(dataDir, "controller.db"))
	if bytes.Contains(raw, []byte(value)) {
		t.Fatal("the controller's store file holds the value")
	}
	if strings.Contains(ctl.Log(), value) {
		t.Fatal("the controller logged the value")
	}
	if !strings.Contains(ctl.Log(), `msg="secret set" module=m secret=API_KEY`) {
		t.Fatalf("the controller did not log the set (without its value):\n%s", ctl.Log())
	}
}
