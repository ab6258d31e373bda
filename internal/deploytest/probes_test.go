package deploytest

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testproc"
)

// probe is an HTTP probe a deployment file points at a binary's listener
// (the WISP_* variable of its listen address).
type probe struct {
	where, bin, listener, path string
}

// liveServers are a wisp-controller and a wisp-agent running on loopback
// with every listener on a port of its own, to ask which paths each
// listener serves: a probe pointed at a path nobody serves is a 404 that
// no parsing of the files would notice.
type liveServers struct {
	// base maps binary and listener variable to the listener's base URL.
	base map[string]map[string]string
}

// startLiveServers runs both binaries until t ends.
func startLiveServers(t *testing.T) *liveServers {
	t.Helper()
	dir := t.TempDir()
	ctl := testproc.Start(t, "wisp-controller", nativeBin("wisp-controller"), []string{"WISP_TLS=off"},
		"--data-dir", filepath.Join(dir, "controller"), "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	rest := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	quic := ctl.Await(`msg="QUIC listening" addr=(\S+)`)
	metrics := "http://" + ctl.Await(`msg=metrics addr=(\S+)`)
	out, err := exec.Command(nativeBin("wisp-controller"), "token", "create", "--data-dir", filepath.Join(dir, "controller"), "--url", rest).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	agent := testproc.Start(t, "wisp-agent", nativeBin("wisp-agent"), []string{"WISP_JOIN_TOKEN=" + strings.TrimSpace(string(out))},
		"run", "--controllers", quic, "--data-dir", filepath.Join(dir, "agent"), "--mqtt-broker", "",
		"--local-api", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	agent.Await(`msg=connected`)
	return &liveServers{base: map[string]map[string]string{
		"wisp-controller": {"WISP_LISTEN": rest, "WISP_METRICS_ADDR": metrics},
		"wisp-agent": {"WISP_LOCAL_API": "http://" + agent.Await(`msg="local invoke API" addr=(\S+)`),
			"WISP_METRICS_ADDR": "http://" + agent.Await(`msg=metrics addr=(\S+)`)},
	}}
}

// status GETs path on a binary's listener, without a token.
func (s *liveServers) status(bin, listener, path string) (int, error) {
	base, ok := s.base[bin][listener]
	if !ok {
		return 0, fmt.Errorf("the test runs no %s listener of %s", listener, bin)
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// checkProbes wants every probe to reach a path its listener serves: a
// liveness or readiness probe that answers 404 (or 401: a probe sends no
// token) would fail a healthy server forever.
func (c *checker) checkProbes() {
	if c.live == nil {
		return
	}
	for _, p := range c.probes {
		status, err := c.live.status(p.bin, p.listener, p.path)
		switch {
		case err != nil:
			c.errorf(p.where, "probe %s on %s's %s: %v", p.path, p.bin, p.listener, err)
		case status != http.StatusOK:
			c.errorf(p.where, "probe %s on %s's %s answers %d, want 200", p.path, p.bin, p.listener, status)
		}
	}
}

// TestHealthcheckCommands runs the healthcheck commands the Dockerfiles and
// docker-compose.yml use against live servers: each must exit 0 when its
// server is ready, and 1 when nothing answers.
func TestHealthcheckCommands(t *testing.T) {
	live := startLiveServers(t)
	for _, bin := range []string{"wisp-controller", "wisp-agent"} {
		addr := strings.TrimPrefix(live.base[bin]["WISP_METRICS_ADDR"], "http://")
		for _, live := range []bool{false, true} {
			args := []string{"healthcheck", "--metrics-addr", addr}
			if live {
				args = append(args, "--live")
			}
			if out, err := exec.Command(nativeBin(bin), args...).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
			}
		}
		cmd := exec.Command(nativeBin(bin), "healthcheck", "--metrics-addr", "127.0.0.1:1", "--wait", "500ms")
		if out, err := cmd.CombinedOutput(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("%s healthcheck with nothing listening: %v (exit %v)\n%s", bin, err, cmd.ProcessState, out)
		}
	}
}
