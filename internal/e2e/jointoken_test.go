package e2e

import (
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

	second := startEnv(t, "wisp-agent edge2", nil, agentArgs(c, token, "edge2", t.TempDir())...)
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
