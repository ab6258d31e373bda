package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testnet"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// probe GETs a health path and returns the status and body ("" and 0 when
// nothing answered).
func probe(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wantProbe polls url until it answers status with body, within d; every
// answer on the way must be one of the two states (200 ok or 503).
func wantProbe(t *testing.T, d time.Duration, url string, status int, body string) {
	t.Helper()
	testwait.Until(t, d, func() error {
		got, b := probe(url)
		if got != status || b != body {
			return &probeError{url, got, b}
		}
		return nil
	})
}

type probeError struct {
	url    string
	status int
	body   string
}

func (e *probeError) Error() string { return e.url + ": " + http.StatusText(e.status) + " " + e.body }

// TestHealthControllerFollowsPostgres cuts the controller's Postgres (a
// fresh schema reached through a TCP proxy) and restores it: /readyz on
// the REST port and on --metrics-addr goes 503 within a few seconds and
// back to 200, /healthz stays 200 throughout, and the process stays up.
func TestHealthControllerFollowsPostgres(t *testing.T) {
	t.Parallel()
	dsn := testpg.Schema(t, 4)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("the test DSN is no URL: %v", err)
	}
	proxy := testnet.NewTCPProxy(t, u.Host)
	u.Host = proxy.Addr()
	c := startController(t, t.TempDir(), u.String(), "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	metrics := "http://" + c.Await(`msg=metrics addr=(\S+)`)
	ready := []string{c.url + "/readyz", metrics + "/readyz"}
	live := []string{c.url + "/healthz", metrics + "/healthz"}
	for _, u := range ready {
		wantProbe(t, 10*time.Second, u, 200, "ok\n")
	}

	proxy.Stop() // Postgres is gone: refused, and the pool's connections cut
	cut := time.Now()
	for _, u := range ready {
		wantProbe(t, 5*time.Second, u, 503, "not ready: store unreachable\n")
	}
	t.Logf("/readyz answered 503 %v after the cut", time.Since(cut).Round(time.Millisecond))
	for _, u := range live {
		if s, b := probe(u); s != 200 || b != "ok\n" {
			t.Errorf("%s during the outage = %d %q, want 200 ok", u, s, b)
		}
	}
	// The outage lasts a few probe periods; /healthz answers all along.
	for range 3 {
		time.Sleep(time.Second)
		for _, u := range live {
			if s, _ := probe(u); s != 200 {
				t.Errorf("%s during the outage = %d", u, s)
			}
		}
	}

	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	for _, u := range ready {
		wantProbe(t, 15*time.Second, u, 200, "ok\n")
	}
	select {
	case <-c.Done():
		t.Fatalf("the controller exited:\n%s", c.Log())
	default:
	}
	if !strings.Contains(c.Log(), "readiness check failing") {
		t.Errorf("the controller did not log why it was not ready")
	}
}

// TestHealthAgentLinkAndStatus partitions two agents from their controller
// (a UDP relay that drops everything): the one with --ready-requires-link
// answers 503 on /readyz until it is linked again, the one without stays
// ready. Local invocations during the partition show in `wisp-agent
// status` from the running agent's local API (the link down, the outbox
// backlog, the activations with their logs) and, once the agent stopped,
// from its data dir.
func TestHealthAgentLinkAndStatus(t *testing.T) {
	t.Parallel()
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	relay := testnet.NewUDPRelay(t, c.quic)
	via := *c
	via.quic = relay.Addr()
	tok := c.joinTokenUses(t, "", 2)
	c.upload(t, "_", "logs", "log", map[string]string{"wait_for_workers": "false"})

	dirA, dirB := t.TempDir(), t.TempDir()
	a := startAgentEnv(t, &via, tok, "strict", dirA, nil, "--ready-requires-link", "--mqtt-broker", "")
	b := startAgentEnv(t, &via, tok, "lenient", dirB, nil, "--mqtt-broker", "")
	apiA := a.Await(`msg="local invoke API" addr=(\S+)`)
	metricsA := "http://" + a.Await(`msg=metrics addr=(\S+)`)
	readyA := []string{"http://" + apiA + "/readyz", metricsA + "/readyz"}
	readyB := "http://" + b.Await(`msg="local invoke API" addr=(\S+)`) + "/readyz"
	for _, u := range append(readyA, readyB) {
		wantProbe(t, 15*time.Second, u, 200, "ok\n")
	}
	// The function reached the agents' desired sets.
	waitFor(t, "the function in the strict agent's desired set", func() bool {
		rep := agentStatus(t, dirA, apiA)
		return len(rep.Desired) == 1 && rep.Desired[0].HasCode
	})
	rep := agentStatus(t, dirA, apiA)
	if rep.From != status.FromAPI || len(rep.Links) != 1 || !rep.Links[0].Connected || rep.Links[0].Controller != relay.Addr() || rep.Ready == nil || !rep.Ready.Ready {
		t.Fatalf("status of a linked agent: %+v", rep)
	}

	relay.Cut.Store(true)
	cut := time.Now()
	for _, u := range readyA {
		wantProbe(t, 20*time.Second, u, 503, "not ready: no controller link\n")
	}
	t.Logf("--ready-requires-link: 503 %v after the partition", time.Since(cut).Round(time.Millisecond))
	if s, body := probe(readyB); s != 200 {
		t.Errorf("the agent without --ready-requires-link answers %d %q while partitioned, want 200", s, body)
	}
	if s, _ := probe(metricsA + "/healthz"); s != 200 {
		t.Errorf("/healthz of a partitioned agent = %d, want 200", s)
	}
	// Local invocations during the partition wait in the outbox.
	localToken := readToken(t, filepath.Join(dirA, "local.token"))
	for range 2 {
		s, body := testhttp.Do(t, "POST", "http://"+apiA+"/v1/fn/_/logs", localToken, "application/json", strings.NewReader(`{"args":{}}`))
		if s != 200 {
			t.Fatalf("local invoke during the partition: %d %s", s, body)
		}
	}
	rep = agentStatus(t, dirA, apiA)
	if len(rep.Links) != 1 || rep.Links[0].Connected || rep.Links[0].LastError == "" || rep.Links[0].Since.Before(cut.Add(-time.Second)) {
		t.Errorf("link of a partitioned agent: %+v", rep.Links)
	}
	if rep.Outbox.Count != 2 || rep.Outbox.Bytes == 0 || rep.Outbox.Oldest.IsZero() {
		t.Errorf("outbox after 2 local invocations in a partition: %+v", rep.Outbox)
	}
	checkRecent(t, "API", rep.Recent, 2, true)
	text := agentStatusText(t, dirA, apiA)
	for _, w := range []string{"disconnected", "outbox: 2 waiting", "local-api", "first line", "ready: no (no controller link)"} {
		if !strings.Contains(text, w) {
			t.Errorf("wisp-agent status lacks %q:\n%s", w, text)
		}
	}

	relay.Cut.Store(false)
	for _, u := range readyA {
		wantProbe(t, 30*time.Second, u, 200, "ok\n")
	}
	waitFor(t, "the outbox drained after the heal", func() bool { return agentStatus(t, dirA, apiA).Outbox.Count == 0 })

	// Partitioned again, the agent stops: its data dir says what waits.
	relay.Cut.Store(true)
	wantProbe(t, 20*time.Second, readyA[0], 503, "not ready: no controller link\n")
	for range 3 {
		if s, body := testhttp.Do(t, "POST", "http://"+apiA+"/v1/fn/_/logs", localToken, "application/json", strings.NewReader(`{}`)); s != 200 {
			t.Fatalf("local invoke during the partition: %d %s", s, body)
		}
	}
	a.Stop()
	rep = agentStatus(t, dirA, apiA)
	if rep.From != status.FromDataDir || rep.AgentID == "" || len(rep.Links) != 0 || len(rep.Desired) != 1 {
		t.Errorf("status from the data dir: %+v", rep)
	}
	if rep.Outbox.Count != 3 || rep.Outbox.Bytes == 0 {
		t.Errorf("outbox of the stopped agent: %+v", rep.Outbox)
	}
	checkRecent(t, "data dir", rep.Recent, 3, false)
	text = agentStatusText(t, dirA, apiA)
	if !strings.Contains(text, "the agent is not running") || !strings.Contains(text, "outbox: 3 waiting") {
		t.Errorf("wisp-agent status of a stopped agent:\n%s", text)
	}
}

// checkRecent wants at least n local-api activations of _/logs that went
// well, newest first, with the function's log lines when logs is set (the
// outbox keeps no log lines yet on this branch).
func checkRecent(t *testing.T, from string, recent []status.Activation, n int, logs bool) {
	t.Helper()
	var local []status.Activation
	for _, a := range recent {
		if a.Source == "local-api" {
			local = append(local, a)
		}
	}
	if len(local) < n {
		t.Fatalf("%s: %d local-api activations among the recent ones, want %d: %+v", from, len(local), n, recent)
	}
	if !slices.IsSortedFunc(recent, func(x, y status.Activation) int { return y.Started.Compare(x.Started) }) {
		t.Errorf("%s: recent activations not newest first: %+v", from, recent)
	}
	for _, a := range local[:n] {
		if a.ID == "" || a.Module != "_" || a.Function != "logs" || a.Status != "ok" || a.Started.IsZero() {
			t.Errorf("%s: activation %+v", from, a)
		}
		if logs && (len(a.Logs) == 0 || a.Logs[0].Text != "first line") {
			t.Errorf("%s: activation %s logs %+v, want the function's lines", from, a.ID, a.Logs)
		}
	}
}

// agentStatus runs `wisp-agent status -o json`.
func agentStatus(t *testing.T, dataDir, api string) status.Report {
	t.Helper()
	out := runStatus(t, dataDir, api, "-o", "json")
	var rep status.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("wisp-agent status -o json: %v\n%s", err, out)
	}
	return rep
}

func agentStatusText(t *testing.T, dataDir, api string) string {
	t.Helper()
	return runStatus(t, dataDir, api)
}

func runStatus(t *testing.T, dataDir, api string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "wisp-agent"), append([]string{"status", "--data-dir", dataDir, "--local-api", api}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("wisp-agent status: %v\n%s%s", err, out, stderr)
	}
	return string(out)
}
