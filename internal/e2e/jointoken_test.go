package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJoinTokenSingleUse: a token made with the defaults lets one agent
// join; a second agent presenting it is refused at its hello and gives up
// with an error that says why, and the controller lists one agent. The
// first agent, restarted, comes back with its credential, not the token.
func TestJoinTokenSingleUse(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	out, err := exec.Command(filepath.Join(bin, "wisp-controller"), "token", "create", "--data-dir", c.dataDir, "--url", c.url).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	token := strings.TrimSpace(string(out))
	dir1 := t.TempDir()
	first := startAgent(t, c, token, "edge1", dir1)

	second := startEnv(t, "wisp-agent edge2", tokenEnv(token), agentArgs(c, "edge2", t.TempDir())...)
	select {
	case <-second.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the agent with a used-up token is still running after 30 s")
	}
	if log := second.Log(); !strings.Contains(log, "used-up join token") {
		t.Fatalf("the refused agent does not say why:\n%s", log)
	}
	if agents := c.agents(t); len(agents) != 1 {
		t.Fatalf("the controller knows %d agents, want 1: %v", len(agents), agents)
	}

	// The joined agent's credential still works after a restart.
	first.Stop()
	startAgent(t, c, token, "edge1", dir1)
	if agents := c.agents(t); len(agents) != 1 {
		t.Fatalf("after a restart the controller knows %d agents, want 1", len(agents))
	}
}

// TestJoinTokenNotOnCommandLine: an agent started as the README says, with
// the token in a file or in WISP_JOIN_TOKEN, joins, and the token's secret
// is in no process's command line.
func TestJoinTokenNotOnCommandLine(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	token := c.joinToken(t, "")
	secret := token[strings.LastIndexByte(token, '.')+1:]
	file := filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agents := []*proc{
		startAgent(t, c, "", "from-file", t.TempDir(), "--join-token-file", file),
		startAgentEnv(t, c, token, "from-env", t.TempDir(), nil),
	}
	waitFor(t, "both agents connected", func() bool { return len(c.connected(t)) == 2 })
	for _, a := range agents {
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", a.Cmd.Process.Pid)); err != nil || len(cmdline) == 0 {
			t.Fatalf("%s: cannot read its command line: %v", a.Name, err)
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("process %s has the join token's secret on its command line: %q", e.Name(), bytes.ReplaceAll(b, []byte{0}, []byte(" ")))
		}
	}
}

// TestJoinTokenExpiredOrRevoked: an agent presenting an expired token, or
// one an operator revoked (DELETE /v1/admin/tokens/{id}), is refused and
// stops, and the controller records no agent.
func TestJoinTokenExpiredOrRevoked(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	create := func(args ...string) string {
		out, err := exec.Command(filepath.Join(bin, "wisp-controller"), append([]string{"token", "create", "--data-dir", c.dataDir, "--url", c.url}, args...)...).Output()
		if err != nil {
			t.Fatalf("token create: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	expiring := create("--ttl", "1s")
	revoked := create("--uses", "5")
	status, body := c.do(t, "GET", "/v1/admin/tokens", nil, "")
	var list struct{ Data []struct{ ID, State string } }
	if err := json.Unmarshal(body, &list); status != 200 || err != nil || len(list.Data) != 2 {
		t.Fatalf("GET /v1/admin/tokens: %d %s", status, body)
	}
	if status, body := c.do(t, "DELETE", "/v1/admin/tokens/"+list.Data[1].ID, nil, ""); status != 204 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	waitFor(t, "the first token to expire", func() bool {
		_, body := c.do(t, "GET", "/v1/admin/tokens", nil, "")
		return strings.Contains(string(body), `"state":"expired"`)
	})
	for name, token := range map[string]string{"expired": expiring, "revoked": revoked} {
		p := startEnv(t, "wisp-agent "+name, tokenEnv(token), agentArgs(c, name, t.TempDir())...)
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("the agent with the %s token is still running after 30 s", name)
		}
		if log := p.Log(); !strings.Contains(log, "join token") || !strings.Contains(log, "giving up") {
			t.Errorf("the agent with the %s token does not say why it stopped:\n%s", name, log)
		}
	}
	if agents := c.agents(t); len(agents) != 0 {
		t.Fatalf("the controller knows %d agents, want none", len(agents))
	}
}
