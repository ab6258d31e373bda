package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/testing/testproc"
)

// bin holds wisp-controller and wisp-agent, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	runtime.RunCompileWorkerIfAsked()
	dir, err := os.MkdirTemp("", "wisp-cli-")
	if err != nil {
		panic(err)
	}
	bin = dir
	// Built without -race even under -race: the processes are the
	// environment of these tests, not their subject.
	out, err := exec.Command("go", "build", "-o", dir+"/", "../../cmd/wisp-controller", "../../cmd/wisp-agent").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building wisp-controller and wisp-agent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startProc runs one of the binaries built by TestMain.
func startProc(t testing.TB, name string, args ...string) *testproc.Proc {
	t.Helper()
	return testproc.Start(t, name, filepath.Join(bin, name), nil, args...)
}

// TestAgainstController drives the whole CLI against a real controller and
// a real agent.
func TestAgainstController(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls", "off")
	url := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	quic := ctl.Await(`msg="QUIC listening" addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}

	e := env{"XDG_CONFIG_HOME": t.TempDir()}
	work := t.TempDir()
	hello := filepath.Join("..", "..", "testdata", "wasm", "hello_c.wasm")

	// ok runs a command that must succeed and returns its stdout.
	ok := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, e, args...)
		if code != 0 {
			t.Fatalf("wisp %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	// fails runs a command that must fail with one line containing want.
	fails := func(want string, args ...string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, e, args...)
		if code == 0 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
			t.Fatalf("wisp %s: exit %d, stdout %q, stderr %q; want a failure saying %q", strings.Join(args, " "), code, stdout, stderr, want)
		}
	}
	has := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("output lacks %q:\n%s", w, out)
			}
		}
	}

	fails("no token set", "mod", "list", "--host", url)
	ok("config", "set", "host", url)
	fails("no token set", "mod", "list")
	fails("refused the token (it is wrong or expired", "mod", "list", "--token", "wisp_"+strings.Repeat("A", 43))
	ok("config", "set", "token", strings.TrimSpace(string(admin)))

	// Modules.
	has(ok("mod", "create", "m1"), "created module m1")
	fails("already exists", "mod", "create", "m1")
	has(ok("mod", "list"), "NAME\n_\n", "m1\n")
	has(ok("mod", "get", "m1"), "module m1: 0 function(s)")

	// Functions.
	has(ok("fn", "upload", "hello", hello, "-m", "m1"), "uploaded function hello in module m1")
	fails("", "fn", "upload", "hello", hello, "-m", "m1") // duplicate: 409's detail
	var fi functionInfo
	if err := json.Unmarshal([]byte(ok("fn", "get", "hello", "-m", "m1", "-o", "json")), &fi); err != nil {
		t.Fatal(err)
	}
	if fi.Name != "hello" || fi.Module != "m1" || fi.ABI != "funless-v1" || !strings.HasPrefix(fi.Digest, "sha256:") {
		t.Fatalf("fn get -o json: %+v", fi)
	}
	has(ok("fn", "get", "hello", "-m", "m1"), "abi:", "funless-v1", "size:")
	has(ok("fn", "list", "-m", "m1"), "NAME   MODULE\nhello  m1\n")
	has(ok("fn", "update", "hello", hello, "-m", "m1", "--metadata", `{"tag":"t1","capacity":64}`), "updated function hello in module m1")
	has(ok("fn", "get", "hello", "-m", "m1"), `{"tag":"t1","capacity":64}`)
	// Versions and rollbacks.
	has(ok("fn", "versions", "hello", "-m", "m1"), "VERSION", "2 *", `metadata {"tag":"t1","capacity":64}`, "\n1 ")
	has(ok("fn", "rollback", "hello", "-m", "m1"), "rolled back m1/hello to version 1 (now version 3")
	if out := ok("fn", "get", "hello", "-m", "m1"); strings.Contains(out, "t1") {
		t.Fatalf("fn get after the rollback still shows version 2's metadata:\n%s", out)
	}
	has(ok("fn", "rollback", "hello", "-m", "m1", "--to", "2"), "to version 2 (now version 4")
	has(ok("fn", "get", "hello", "-m", "m1"), `{"tag":"t1","capacity":64}`)
	fails("want a version number", "fn", "rollback", "hello", "-m", "m1", "--to", "0")
	fails("Version 99 of m1/hello is not kept", "fn", "rollback", "hello", "-m", "m1", "--to", "99")
	fails("is the current version", "fn", "rollback", "hello", "-m", "m1", "--to", "4")
	var vs []versionItem
	if err := json.Unmarshal([]byte(ok("fn", "versions", "hello", "-m", "m1", "-o", "json")), &vs); err != nil || len(vs) != 4 || vs[0].Version != 4 || !vs[0].Current {
		t.Fatalf("fn versions -o json: %+v %v", vs, err)
	}
	has(ok("fn", "get", "hello", "-m", "m1"), `{"tag":"t1","capacity":64}`, "env:", "none", "allow hosts:", "the controller's default")
	cfgFile := writeFile(t, work, "config.json", []byte(`{"env":{"GREETING":"hi there","A":"1"},"allow_hosts":["API.example.com","*.example.org:443"]}`))
	has(ok("fn", "update", "hello", hello, "-m", "m1", "--fn-config", cfgFile), "updated function hello in module m1")
	has(ok("fn", "get", "hello", "-m", "m1"), `A="1" GREETING="hi there"`, "api.example.com, *.example.org:443")
	badCfg := writeFile(t, work, "bad-config.json", []byte(`{"env":{"A":"1"},"allow_hosts":["bad host"]}`))
	fails("Invalid config: allow_hosts[0]", "fn", "update", "hello", hello, "-m", "m1", "--fn-config", badCfg)
	fails("must hold a JSON object", "fn", "update", "hello", hello, "-m", "m1", "--fn-config", hello)
	has(ok("fn", "get", "hello", "-m", "m1"), `A="1" GREETING="hi there"`) // the refused update changed nothing
	fails("not found", "fn", "get", "nope", "-m", "m1")
	bad := writeFile(t, work, "bad.wasm", []byte("\x00asm\x01\x00\x00\x00garbage"))
	fails("", "fn", "upload", "bad", bad) // the controller's loader refuses it

	// APP scripts.
	script := writeFile(t, work, "app.yaml", []byte("- default:\n    - workers: \"*\"\n      strategy: best-first\n  followup: fail\n"))
	has(ok("app", "create", "s1", script), "created APP script s1")
	has(ok("app", "list"), "s1")
	has(ok("app", "get", "s1"), "strategy: best-first")

	// Users.
	userToken := strings.TrimSpace(ok("admin", "user", "create", "bob"))
	if !strings.HasPrefix(userToken, "wisp_") {
		t.Fatalf("admin user create printed %q", userToken)
	}
	has(ok("admin", "user", "list"), "bob", "no")
	fails("needs the admin token", "agent", "list", "--token", userToken)
	// A user sees its own modules only, and may not delete another's
	// user or module.
	if out := ok("mod", "list", "--token", userToken); strings.Contains(out, "m1") {
		t.Fatalf("bob's mod list shows the admin's m1:\n%s", out)
	}
	has(ok("mod", "create", "bobs", "--token", userToken), "created module bobs")
	has(ok("mod", "list", "--token", userToken), "bobs")
	fails("not found", "mod", "delete", "m1", "--token", userToken)
	fails("owns modules", "admin", "subject", "delete", "bob")
	rotated := strings.TrimSpace(ok("admin", "subject", "rotate", "bob"))
	fails("invalid token", "mod", "list", "--token", userToken)
	has(ok("mod", "delete", "bobs", "--token", rotated), "deleted module bobs")
	has(ok("admin", "subject", "list"), "bob")
	has(ok("admin", "subject", "delete", "bob"), "deleted user bob")
	fails("invalid token", "mod", "list", "--token", rotated)
	userToken = strings.TrimSpace(ok("admin", "user", "create", "bob")) // for what follows

	// An agent joins with a token from the CLI.
	join := strings.TrimSpace(ok("token", "create", "--ttl", "1h"))
	if !strings.HasPrefix(join, "wispjoin1.") {
		t.Fatalf("token create printed %q", join)
	}
	agent := startProc(t, "wisp-agent", "run", "--controllers", quic, "--join-token", join, "--data-dir", t.TempDir(),
		"--agent-name", "edge1", "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0")
	agent.Await(`msg=connected`)
	has(ok("agent", "list"), "edge1", "yes")
	// The token is spent; list and revoke.
	ok("token", "create", "--uses", "3")
	has(ok("token", "list"), "ID", "used", "1/1", "active", "0/3")
	listed := ok("token", "list", "-o", "json")
	var toks []struct{ ID, State string }
	if err := json.Unmarshal([]byte(listed), &toks); err != nil || len(toks) != 2 {
		t.Fatalf("token list -o json: %v %s", err, listed)
	}
	has(ok("token", "revoke", toks[1].ID), "revoked "+toks[1].ID)
	fails("not found", "token", "revoke", toks[1].ID)
	fails("needs the admin token", "token", "list", "--token", userToken)
	has(ok("quarantine", "list"), "DIGEST  STATE")
	fails("not found", "quarantine", "release", "sha256:"+strings.Repeat("0", 64))
	fails("not a digest", "quarantine", "release", "hello")
	fails("needs the admin token", "quarantine", "list", "--token", userToken)

	// Invoke.
	has(ok("fn", "upload", "hello", hello, "--wait"), "uploaded function hello in module _")
	if got := ok("fn", "invoke", "hello", "-a", "name=Ada"); got != "{\"payload\":\"Hello Ada!\"}\n" {
		t.Fatalf("fn invoke printed %q", got)
	}
	if got := ok("fn", "invoke", "hello", "-m", "m1", "-j", `{"name":"Bob"}`, "--script", "s1"); got != "{\"payload\":\"Hello Bob!\"}\n" {
		t.Fatalf("fn invoke -j --script printed %q", got)
	}
	fails("not found", "fn", "invoke", "nope")

	// Activations.
	// Records arrive asynchronously (agent -> controller): poll.
	var acts []activation
	for deadline := time.Now().Add(20 * time.Second); len(acts) < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("activation list -o json: %d records, want 2", len(acts))
		}
		if err := json.Unmarshal([]byte(ok("activation", "list", "--since", "1h", "-o", "json", "--limit", "10")), &acts); err != nil {
			t.Fatal(err)
		}
	}
	has(ok("activation", "list", "-m", "_", "-f", "hello"), "_/hello", "success")
	// Newest first: Bob's call, then Ada's.
	has(ok("activation", "get", acts[0].ID), acts[0].ID, "success", `{"payload":"Hello Bob!"}`)
	has(ok("activation", "get", acts[1].ID), acts[1].ID, "success", `{"payload":"Hello Ada!"}`)

	// Clean up.
	has(ok("fn", "delete", "hello"), "deleted function hello from module _")
	fails("not found", "fn", "invoke", "hello")
	has(ok("mod", "rename", "m1", "m2"), "renamed module m1 to m2")
	has(ok("fn", "list", "-m", "m2"), "hello")
	fails("", "mod", "delete", "_")
	has(ok("mod", "delete", "m2"), "deleted module m2")
	fails("not found", "mod", "get", "m2")

	// Agent control (its behaviour: internal/e2e TestAgentRemove and
	// friends).
	var agents []struct {
		ID, Name    string
		Controllers []string
	}
	if err := json.Unmarshal([]byte(ok("agent", "list", "-o", "json")), &agents); err != nil || len(agents) != 1 || len(agents[0].Controllers) != 1 {
		t.Fatalf("agent list -o json: %v %+v", err, agents)
	}
	id := agents[0].ID
	has(ok("agent", "list"), "CONTROLLERS", agents[0].Controllers[0])
	has(ok("agent", "cordon", id), "CORDONED", "yes")
	has(ok("agent", "list"), "CORDONED")
	if out := ok("agent", "list"); !strings.Contains(out, "edge1  "+id+"  yes        yes") {
		t.Fatalf("agent list does not show edge1 cordoned:\n%s", out)
	}
	has(ok("agent", "label", id, "tag=gpu", "zone=b"), "tag=gpu,zone=b")
	has(ok("agent", "label", id, "zone-"), "tag=gpu")
	has(ok("agent", "list"), "tag=gpu")
	has(ok("agent", "cap", id, "256MiB"), "256.0 MiB")
	has(ok("agent", "cap", id, "none"), "none")
	has(ok("agent", "uncordon", id), "no")
	has(ok("agent", "drain", id, "--timeout", "5s"), "drained "+id)
	fails("not an agent id", "agent", "cordon", "edge1")
	fails("neither key=value nor key-", "agent", "label", id, "oops")
	fails("not a positive size", "agent", "cap", id, "lots")
	fails("needs the admin token", "agent", "remove", id, "--token", userToken)
	has(ok("agent", "remove", id), "removed "+id)
	fails("not found", "agent", "remove", id)
	select {
	case <-agent.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the removed agent still runs after 30 s")
	}
}

// TestPinnedTLS: the CLI talks TLS to a real controller serving its
// self-signed certificate once its key fingerprint is pinned, refuses it
// before (saying what it presented) and with a wrong pin, and refuses to
// send a pinned configuration over plain HTTP.
func TestPinnedTLS(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir)
	addr := ctl.Await(`msg="REST API listening" addr=(\S+)`)
	logged := ctl.Await(`msg="REST API listening" .*tls_fingerprint=(\S+)`)
	out, err := exec.Command(filepath.Join(bin, "wisp-controller"), "tls", "fingerprint", "--data-dir", dataDir).Output()
	if err != nil {
		t.Fatalf("wisp-controller tls fingerprint: %v", err)
	}
	pin := strings.TrimSpace(string(out))
	if pin != logged || !strings.HasPrefix(pin, "sha256:") {
		t.Fatalf("tls fingerprint printed %q, the log says %q", pin, logged)
	}
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	e := env{"XDG_CONFIG_HOME": t.TempDir()}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, e, args...)
	}
	fails := func(args []string, want ...string) {
		t.Helper()
		code, stdout, stderr := run(args...)
		if code == 0 || stdout != "" || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("wisp %s: exit %d, stdout %q, stderr %q; want a one-line failure", strings.Join(args, " "), code, stdout, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stderr, w) {
				t.Fatalf("wisp %s: %q lacks %q", strings.Join(args, " "), stderr, w)
			}
		}
	}
	if code, _, stderr := run("config", "set", "host", "https://"+addr); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := run("config", "set", "token", strings.TrimSpace(string(admin))); code != 0 {
		t.Fatal(stderr)
	}

	// Not pinned: no CA vouches for it; the error shows its fingerprint.
	fails([]string{"mod", "list"}, "does not trust", pin, "wisp config set tls-fingerprint")
	// A wrong pin is refused, naming both keys; nothing is served.
	wrong := "sha256:" + strings.Repeat("ab", 32)
	fails([]string{"mod", "list", "--tls-fingerprint", wrong}, "refusing the controller", pin, wrong, "--tls-fingerprint")
	fails([]string{"mod", "list", "--tls-fingerprint", "sha256:12"}, "TLS fingerprint from --tls-fingerprint")

	// Pinned: served.
	if code, _, stderr := run("config", "set", "tls-fingerprint", strings.ToUpper(pin[len("sha256:"):])); code == 0 {
		t.Fatalf("a fingerprint without sha256: was saved: %s", stderr)
	}
	if code, _, stderr := run("config", "set", "tls-fingerprint", pin); code != 0 {
		t.Fatal(stderr)
	}
	if code, stdout, stderr := run("mod", "list"); code != 0 || !strings.Contains(stdout, "_") {
		t.Fatalf("pinned mod list: exit %d: %s %s", code, stdout, stderr)
	}
	if code, stdout, _ := run("config", "get", "tls-fingerprint"); code != 0 || strings.TrimSpace(stdout) != pin {
		t.Fatalf("config get tls-fingerprint = %q", stdout)
	}
	if code, stdout, _ := run("config", "get"); code != 0 || !strings.Contains(stdout, pin) {
		t.Fatalf("config get lacks the pin:\n%s", stdout)
	}
	// A pin from the environment overrides the file's.
	e["WISP_TLS_FINGERPRINT"] = wrong
	fails([]string{"mod", "list"}, "refusing the controller", "WISP_TLS_FINGERPRINT")
	delete(e, "WISP_TLS_FINGERPRINT")
	// A pin never goes with plain HTTP.
	fails([]string{"mod", "list", "--host", "http://" + addr}, "not https://")
}

// TestPinnedCluster: two real controllers sharing one key (as the
// controllers of a cluster do) are pinned by one fingerprint; with one of
// them killed the CLI goes on through the other; a controller presenting
// another key is refused, not skipped.
func TestPinnedCluster(t *testing.T) {
	t.Parallel()
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	out, err := exec.Command(filepath.Join(bin, "wisp-controller"), "tls", "fingerprint", "--data-dir", dirA).Output()
	if err != nil {
		t.Fatalf("wisp-controller tls fingerprint: %v", err)
	}
	pin := strings.TrimSpace(string(out))
	for _, f := range []string{"controller.crt", "controller.key"} {
		b, err := os.ReadFile(filepath.Join(dirA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dirA)
	addrA := a.Await(`msg="REST API listening" addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(dirA, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	// The second adopts the first's admin token (a token found in
	// admin.token at the first start), as a cluster's controllers share
	// their subjects through the store.
	if err := os.WriteFile(filepath.Join(dirB, "admin.token"), admin, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dirB)
	addrB := b.Await(`msg="REST API listening" addr=(\S+)`)
	if got := b.Await(`msg="REST API listening" .*tls_fingerprint=(\S+)`); got != pin {
		t.Fatalf("the second controller presents %s, want the shared %s", got, pin)
	}
	c := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dirC)
	addrC := c.Await(`msg="REST API listening" addr=(\S+)`)

	e := env{"XDG_CONFIG_HOME": t.TempDir(), "WISP_TOKEN": strings.TrimSpace(string(admin)), "WISP_TLS_FINGERPRINT": pin}
	cluster := "https://" + addrA + ",https://" + addrB
	for range 6 {
		if code, stdout, stderr := runCLI(t, e, "mod", "list", "--host", cluster); code != 0 || !strings.Contains(stdout, "_") {
			t.Fatalf("mod list through the pinned cluster: exit %d %q %q", code, stdout, stderr)
		}
	}
	a.Kill()
	for range 6 {
		if code, stdout, stderr := runCLI(t, e, "mod", "list", "--host", cluster); code != 0 || !strings.Contains(stdout, "_") {
			t.Fatalf("mod list with the first controller killed: exit %d %q %q", code, stdout, stderr)
		}
	}
	// Another key in the list: refused wherever it comes, never skipped.
	for _, hosts := range []string{"https://" + addrC + ",https://" + addrA, "https://" + addrA + ",https://" + addrC} {
		code, _, stderr := runCLI(t, e, "mod", "list", "--host", hosts)
		if code != ExitError || !strings.Contains(stderr, "refusing the controller at https://"+addrC) || !strings.Contains(stderr, pin) {
			t.Fatalf("mod list with %s: exit %d %q; want the pin refusal", hosts, code, stderr)
		}
	}
}
