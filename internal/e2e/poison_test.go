package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// poisonMarker in a call's args makes the fault agent SIGKILL itself when
// the guest starts (internal/fault: kill-on-input), after its crash marker
// is written, as a guest that exhausts the host's memory gets it OOM-killed.
const poisonMarker = "wisp-poison-pill"

// TestPoisonPillStopsAtOneAgent: with three agents, a call whose code kills
// its agent takes down that agent only. The call is answered 502 ("may have
// run") and not run elsewhere; while the dead agent is away the code is
// held (423) so that a retry cannot kill the next agent; once the agent
// restarts it reports the crash, and the controller quarantines the code
// (423, on both stores), tells every agent (whose local APIs refuse it
// too), lists it for the admin, and runs it again once the admin releases
// it. A normal function answers throughout.
func TestPoisonPillStopsAtOneAgent(t *testing.T) {
	for _, storeKind := range []string{"embedded", "postgres"} {
		t.Run(storeKind, func(t *testing.T) {
			dsn := ""
			if storeKind == "postgres" {
				dsn = freshSchema(t)
			}
			runPoisonPill(t, dsn)
		})
	}
}

type edgeProc struct {
	p                      *proc
	dir, metrics, localAPI string
	name                   string
}

func (e *edgeProc) watch() {
	e.metrics = e.p.Await(`msg=metrics addr=(\S+)`)
	e.localAPI = e.p.Await(`msg="local invoke API" addr=(\S+)`)
}

func (e *edgeProc) alive() bool {
	select {
	case <-e.p.Done():
		return false
	default:
		return true
	}
}

func runPoisonPill(t *testing.T, dsn string) {
	c := startController(t, t.TempDir(), dsn, "127.0.0.1:0")
	token := c.joinToken(t, dsn)
	fault := "kill-on-input=" + poisonMarker
	var edges []*edgeProc
	for _, name := range []string{"edge1", "edge2", "edge3"} {
		e := &edgeProc{name: name, dir: t.TempDir()}
		e.p = startFaultAgent(t, c, token, name, e.dir, fault)
		e.watch()
		edges = append(edges, e)
	}
	waitFor(t, "three agents", func() bool { return len(c.connected(t)) == 3 })
	c.upload(t, "_", "poison", "echo_c", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	digest := fixtureDigest(t, "echo_c")
	if status, body := c.invoke(t, "_", "poison", `{"args":{"x":1}}`); status != 200 || body != `{"data":{"x":1}}` {
		t.Fatalf("the code without the pill: %d %s", status, body)
	}
	hello := func(when string) {
		t.Helper()
		for i := range 5 {
			if status, body := c.invoke(t, "_", "hello", `{"args":{"name":"N"}}`); status != 200 || !strings.Contains(body, "Hello N!") {
				t.Fatalf("hello %s, call %d: %d %s", when, i, status, body)
			}
		}
	}
	pill := `{"args":{"x":"` + poisonMarker + `"}}`

	// The pill: its agent dies; the call waits for the agent and is not
	// run on another one.
	type answer struct {
		status int
		body   string
	}
	first := make(chan answer, 1)
	go func() {
		status, body := c.invoke(t, "_", "poison", pill)
		first <- answer{status, body}
	}()
	var victim *edgeProc
	waitFor(t, "an agent to die of the pill", func() bool {
		for _, e := range edges {
			if !e.alive() {
				victim = e
				return true
			}
		}
		return false
	})
	a := <-first
	if a.status != 502 || !strings.Contains(a.body, "may have run") || !strings.Contains(a.body, victim.name) {
		t.Fatalf("the call that killed %s: %d %s, want 502 saying it may have run", victim.name, a.status, a.body)
	}
	// The victim is away: the code is held, so that this retry cannot kill
	// another agent.
	status, body := c.invoke(t, "_", "poison", pill)
	if status != 423 || !strings.Contains(body, "held") {
		t.Fatalf("retry while %s is away: %d %s, want 423 held", victim.name, status, body)
	}
	hello("while the victim is away")
	for _, e := range edges {
		if e != victim && !e.alive() {
			t.Fatalf("%s died too", e.name)
		}
	}

	// The victim restarts: its crash markers name the code, which it
	// quarantines and reports.
	victim.p = startFaultAgent(t, c, "", victim.name, victim.dir, fault)
	victim.watch()
	victim.p.Await(`quarantined until an operator releases it`)
	waitFor(t, "three agents again", func() bool { return len(c.connected(t)) == 3 })
	status, body = c.invoke(t, "_", "poison", `{"args":{"x":2}}`)
	if status != 423 || !strings.Contains(body, "quarantined") || !strings.Contains(body, victim.name) || !strings.Contains(body, "wisp quarantine release") {
		t.Fatalf("the quarantined code with harmless args: %d %s, want 423 quarantined", status, body)
	}
	hello("with the code quarantined")
	list := quarantineList(t, c)
	if len(list) != 1 || list[0].Digest != digest || list[0].State != "quarantined" || list[0].AgentName != victim.name ||
		strings.Join(list[0].Functions, ",") != "_/poison" || !strings.Contains(list[0].Reason, "running") {
		t.Fatalf("GET /v1/admin/quarantine = %+v", list)
	}
	// Every agent holds it, and refuses it on its local API too.
	for _, e := range edges {
		waitFor(t, e.name+" to hold the quarantine", func() bool {
			return metric(t, e.metrics, "wisp_agent_quarantined_digests") == "1"
		})
		status, body := localInvoke(t, e.localAPI, readToken(t, filepath.Join(e.dir, "local.token")), "poison", `{"args":{"x":3}}`)
		if status != 423 || !strings.Contains(body, "quarantined") {
			t.Fatalf("%s's local API: %d %s, want 423", e.name, status, body)
		}
	}

	// The admin releases it: it runs again, everywhere.
	if status, body := c.do(t, "DELETE", "/v1/admin/quarantine/"+digest, nil, ""); status != 204 {
		t.Fatalf("release: %d %s", status, body)
	}
	for _, e := range edges {
		waitFor(t, e.name+" to drop the quarantine", func() bool {
			return metric(t, e.metrics, "wisp_agent_quarantined_digests") == "0"
		})
	}
	if status, body := c.invoke(t, "_", "poison", `{"args":{"x":4}}`); status != 200 || body != `{"data":{"x":4}}` {
		t.Fatalf("after the release: %d %s", status, body)
	}
	hello("after the release")
	for _, e := range edges {
		if !e.alive() {
			t.Fatalf("%s died", e.name)
		}
	}
}

type quarantineEntry struct {
	Digest    string   `json:"digest"`
	State     string   `json:"state"`
	Reason    string   `json:"reason"`
	AgentName string   `json:"agent_name"`
	Functions []string `json:"functions"`
}

func quarantineList(t *testing.T, c *controller) []quarantineEntry {
	t.Helper()
	status, b := c.do(t, "GET", "/v1/admin/quarantine", nil, "")
	if status != 200 {
		t.Fatalf("GET /v1/admin/quarantine: %d %s", status, b)
	}
	var env struct{ Data []quarantineEntry }
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

func fixtureDigest(t *testing.T, fixture string) string {
	t.Helper()
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", fixture+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestSlowStartedRunsOnce: an agent whose Started comes after the
// controller's start timeout (2 s; the fault delays it 3 s) is waited for:
// the call answers 200 from it, runs once (the other agent runs nothing,
// one activation is recorded), and is never answered 503. A function
// marked idempotent is run on the other agent too, without the wait: its
// answer comes from there.
func TestSlowStartedRunsOnce(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	token := c.joinToken(t, "")
	slow := &edgeProc{name: "slow", p: startFaultAgent(t, c, token, "slow", t.TempDir(), "delay-started=3s")}
	slow.watch()
	fast := &edgeProc{name: "fast", p: startAgent(t, c, token, "fast", t.TempDir())}
	fast.watch()
	waitFor(t, "two agents", func() bool { return len(c.connected(t)) == 2 })
	c.upload(t, "_", "once", "hello_c", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "again", "hello_c", map[string]string{"wait_for_workers": "true", "metadata": `{"idempotent":true}`})
	if status, body := postScript(t, c, "slow_first", "- default:\n    - workers: [slow]\n    - workers: [fast]\n  followup: fail\n"); status != 201 {
		t.Fatalf("script: %d %s", status, body)
	}
	ok := func(e *edgeProc) int {
		n, _ := strconv.Atoi(metric(t, e.metrics, `wisp_agent_invocations_total{result="ok"}`))
		return n
	}

	t0 := time.Now()
	status, body := c.invoke(t, "_", "once", `{"args":{"name":"Once"},"scheduling":{"language":"app","script":"slow_first"}}`)
	if status != 200 || !strings.Contains(body, "Hello Once!") {
		t.Fatalf("slow Started: %d %s, want 200", status, body)
	}
	if d := time.Since(t0); d < 3*time.Second {
		t.Fatalf("answered in %v: the slow agent's Started was not late", d)
	}
	if s, f := ok(slow), ok(fast); s != 1 || f != 0 {
		t.Fatalf("ran %d times on the slow agent and %d on the other; want once", s, f)
	}
	var acts []activation
	waitFor(t, "the activation recorded", func() bool { acts = listActivations(t, c, "once"); return len(acts) >= 1 })
	// A record comes from a run that an agent answered or put in its
	// outbox: once neither agent runs anything and both outboxes are
	// empty, and the runs are still one, no other record can come.
	waitFor(t, "both agents idle with empty outboxes", func() bool {
		for _, e := range []*edgeProc{slow, fast} {
			if metric(t, e.metrics, "wisp_agent_invocations_in_flight") != "0" || metric(t, e.metrics, "wisp_agent_outbox_entries") != "0" {
				return false
			}
		}
		return true
	})
	if s, f := ok(slow), ok(fast); s != 1 || f != 0 {
		t.Fatalf("ran %d times on the slow agent and %d on the other by the end; want once", s, f)
	}
	if acts = listActivations(t, c, "once"); len(acts) != 1 {
		t.Fatalf("%d activations recorded for one call", len(acts))
	}

	// The slow agent is left out of scheduling until its next heartbeat
	// (every 2 s); let it come back first, so that the idempotent call
	// goes to it.
	time.Sleep(4500 * time.Millisecond)
	status, body = c.invoke(t, "_", "again", `{"args":{"name":"Again"},"scheduling":{"language":"app","script":"slow_first"}}`)
	if status != 200 || !strings.Contains(body, "Hello Again!") {
		t.Fatalf("idempotent, slow Started: %d %s", status, body)
	}
	// It reached the slow agent (which ran it: only its first frame is
	// late), and the answer came from the other one.
	waitFor(t, "the slow agent to have run the idempotent call", func() bool { return ok(slow) == 2 })
	if f := ok(fast); f != 1 {
		t.Fatalf("the other agent ran %d idempotent calls, want 1", f)
	}
}

// TestInputTooLarge: args over the controller's input limit are 413 before
// any agent sees them; args within it but over the agent's own limit are
// refused by the agent (InputTooLarge) and answered 413 too; the agent's
// local API answers 413 for args over its limit.
func TestInputTooLarge(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0", "--max-input-bytes", "2MiB")
	token := c.joinToken(t, "")
	dir := t.TempDir()
	e := &edgeProc{name: "edge", dir: dir, p: startAgent(t, c, token, "edge", dir)}
	e.watch()
	c.upload(t, "_", "echo", "echo_c", map[string]string{"wait_for_workers": "true"})
	localToken := readToken(t, filepath.Join(dir, "local.token"))
	waitFor(t, "the function on the agent", func() bool {
		status, _ := localInvoke(t, e.localAPI, localToken, "echo", `{"args":{}}`)
		return status == 200
	})
	argsOf := func(n int) string { // a body whose args are n bytes of compact JSON
		return `{"args":{"s":"` + strings.Repeat("x", n-len(`{"s":""}`)) + `"}}`
	}
	refused := func() string {
		return metric(t, e.metrics, `wisp_agent_invocations_total{result="input too large"}`)
	}

	status, body := c.invoke(t, "_", "echo", argsOf(2<<20+1))
	if status != 413 || !strings.Contains(body, "input limit is 2097152") {
		t.Fatalf("args over the controller's limit: %d %.200s", status, body)
	}
	if got := refused(); got != "" && got != "0" {
		t.Fatalf("the agent saw args over the controller's limit (%s refusals)", got)
	}
	status, body = c.invoke(t, "_", "echo", argsOf(1<<20+1))
	if status != 413 || !strings.Contains(body, "exceeds the limit of 1048576") {
		t.Fatalf("args over the agent's limit: %d %.200s", status, body)
	}
	if got := refused(); got != "1" {
		t.Fatalf("the agent refused %q calls, want 1", got)
	}
	status, body = localInvoke(t, e.localAPI, localToken, "echo", argsOf(1<<20+1))
	if status != 413 || !strings.Contains(body, "input limit") {
		t.Fatalf("local API, args over the limit: %d %.200s", status, body)
	}
	if status, body := c.invoke(t, "_", "echo", argsOf(1<<20)); status != 200 || !bytes.Contains([]byte(body), []byte(strings.Repeat("x", 1000))) {
		t.Fatalf("args at the limit: %d %.200s", status, body)
	}
}

// TestReleaseAgentHasNoFaults: the release agent binary does not contain
// the fault package's configuration (the wispfault build does: the check
// can fail).
func TestReleaseAgentHasNoFaults(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{{filepath.Join(bin, "wisp-agent"), false}, {faultBin, true}} {
		b, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(b, []byte("WISP_FAULT")); got != tc.want {
			t.Fatalf("%s contains WISP_FAULT: %v, want %v", tc.path, got, tc.want)
		}
	}
}
