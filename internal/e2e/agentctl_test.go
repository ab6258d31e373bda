package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// agentControl is what the /v1/admin/agents/{id} routes answer.
type agentControl struct {
	ID       string   `json:"id"`
	Cordoned bool     `json:"cordoned"`
	Labels   []string `json:"labels"`
	InFlight int      `json:"in_flight"`
}

// control sends one agent control request and decodes the answer.
func (c *controller) control(t testing.TB, method, path, body string) agentControl {
	t.Helper()
	var r *strings.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	var status int
	var b []byte
	if r != nil {
		status, b = c.do(t, method, path, r, "application/json")
	} else {
		status, b = c.do(t, method, path, nil, "")
	}
	if status != 200 {
		t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	var env struct{ Data agentControl }
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

// singleUseToken runs `wisp-controller token create` with the defaults.
func (c *controller) singleUseToken(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "wisp-controller"), "token", "create", "--data-dir", c.dataDir, "--url", c.url).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// idOf is the id of the connected agent named name.
func (c *controller) idOf(t testing.TB, name string) string {
	t.Helper()
	a, ok := c.connected(t)[name]
	if !ok {
		t.Fatalf("agent %s is not connected", name)
	}
	return a.ID
}

// TestAgentRemove: a removed agent, connected or not, is refused at its
// next connection with an error that says why, gets nothing (it never
// connects again, so no desired set, code or invocation), and stops; the
// controller no longer lists it.
func TestAgentRemove(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	connected := startAgent(t, c, c.singleUseToken(t), "edge1", t.TempDir())
	dir2 := t.TempDir()
	offline := startAgent(t, c, c.singleUseToken(t), "edge2", dir2)
	id1, id2 := c.idOf(t, "edge1"), c.idOf(t, "edge2")
	offline.Stop()
	waitFor(t, "edge2 disconnected", func() bool { _, ok := c.connected(t)["edge2"]; return !ok })

	// A connected agent: disconnected at once, refused, stopped.
	if status, b := c.do(t, "DELETE", "/v1/admin/agents/"+id1, nil, ""); status != 204 {
		t.Fatalf("remove %s: %d %s", id1, status, b)
	}
	select {
	case <-connected.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the removed agent still runs after 30 s")
	}
	log := connected.Log()
	for _, want := range []string{"the agent was removed", "used-up join token", "giving up"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the removed agent's log does not say %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "msg=connected"); n != 1 {
		t.Fatalf("the removed agent connected %d times, want once:\n%s", n, log)
	}

	// A disconnected agent can be removed; its next start is refused.
	if status, b := c.do(t, "DELETE", "/v1/admin/agents/"+id2, nil, ""); status != 204 {
		t.Fatalf("remove offline %s: %d %s", id2, status, b)
	}
	again := startEnv(t, "wisp-agent edge2 (removed)", nil, agentArgs(c, "edge2", dir2)...)
	select {
	case <-again.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the removed offline agent still runs after 30 s")
	}
	if log := again.Log(); !strings.Contains(log, "the agent was removed") || strings.Contains(log, "msg=connected") {
		t.Fatalf("the removed offline agent was not refused as removed:\n%s", log)
	}
	for _, a := range c.agents(t) {
		if a.ID == id1 || a.ID == id2 {
			t.Fatalf("the controller still lists removed agent %+v", a)
		}
	}
	if status, _ := c.do(t, "DELETE", "/v1/admin/agents/"+id1, nil, ""); status != 404 {
		t.Fatalf("removing twice: %d, want 404", status)
	}
}

// TestAgentCordonDrain: a cordoned agent gets no new invocation while
// another agent gets them all; drain waits for the invocation running on
// the agent; the cordon survives a controller restart.
func TestAgentCordonDrain(t *testing.T) {
	dir := t.TempDir()
	c := startController(t, dir, "", "127.0.0.1:0")
	tok := c.joinToken(t, "")
	startAgent(t, c, tok, "edge1", t.TempDir(), "--timeout", "3s")
	sim, err := dialSimAgent(t.Context(), c.quic, tok, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	waitFor(t, "two agents", func() bool { return len(c.connected(t)) == 2 })
	edge, simID := c.idOf(t, "edge1"), c.idOf(t, "sim")
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "spin", "loop", map[string]string{"wait_for_workers": "true"})

	// runs invokes hello n times and counts the answers the sim agent gave.
	runs := func(n int) (simRuns int) {
		t.Helper()
		for range n {
			status, body := c.invoke(t, "_", "hello", `{"args":{"name":"Ada"}}`)
			if status != 200 {
				t.Fatalf("invoke: %d %s", status, body)
			}
			if strings.Contains(body, `"sim":true`) {
				simRuns++
			}
		}
		return simRuns
	}
	if st := c.control(t, "PUT", "/v1/admin/agents/"+edge+"/cordon", ""); !st.Cordoned {
		t.Fatalf("cordon: %+v", st)
	}
	if n := runs(10); n != 10 {
		t.Fatalf("with edge1 cordoned the sim agent ran %d of 10 calls, want all", n)
	}
	c.control(t, "DELETE", "/v1/admin/agents/"+edge+"/cordon", "")
	c.control(t, "PUT", "/v1/admin/agents/"+simID+"/cordon", "")
	if n := runs(10); n != 0 {
		t.Fatalf("with the sim agent cordoned it ran %d of 10 calls, want none", n)
	}

	// Drain edge1 while a call that runs 3 s (its timeout) is in flight.
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.invoke(t, "_", "spin", `{}`)
	}()
	waitFor(t, "the spinning call in flight on edge1", func() bool {
		return c.control(t, "GET", "/v1/admin/agents/"+edge, "").InFlight == 1
	})
	st := c.control(t, "POST", "/v1/admin/agents/"+edge+"/drain?wait=30s", "")
	// The drain answers once the agent answered the call; the caller's
	// HTTP answer may still be on its way, so allow it a moment. A drain
	// that did not wait would answer about 3 s before the call ends.
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatalf("drain answered %+v more than 1 s before the in-flight call ended", st)
	}
	if !st.Cordoned || st.InFlight != 0 {
		t.Fatalf("drain = %+v, want cordoned and nothing in flight", st)
	}
	if status, body := c.invoke(t, "_", "hello", `{}`); status != 503 {
		t.Fatalf("every agent cordoned: %d %s, want 503", status, body)
	}

	// The cordon is kept in the store: after a restart edge1 reconnects
	// and is still left out.
	quicAddr := c.quic
	c.Stop()
	c = startController(t, dir, "", quicAddr)
	waitFor(t, "edge1 reconnects", func() bool { _, ok := c.connected(t)["edge1"]; return ok })
	if st := c.control(t, "GET", "/v1/admin/agents/"+edge, ""); !st.Cordoned {
		t.Fatalf("after a restart edge1 is not cordoned: %+v", st)
	}
	if status, body := c.invoke(t, "_", "hello", `{}`); status != 503 {
		t.Fatalf("cordoned edge1 after a restart: %d %s, want 503", status, body)
	}
	c.control(t, "DELETE", "/v1/admin/agents/"+edge+"/cordon", "")
	if status, body := c.invoke(t, "_", "hello", `{}`); status != 200 {
		t.Fatalf("uncordoned: %d %s", status, body)
	}
}

// TestAgentLabelReachesScheduling: a label set from the controller
// overrides the agent's own, reaches APP scheduling (a block naming
// workers by label) and the desired set (tag=...).
func TestAgentLabelReachesScheduling(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	tok := c.joinToken(t, "")
	edge1 := startAgent(t, c, tok, "edge1", t.TempDir(), "--labels", "zone=x")
	sim, err := dialSimAgent(t.Context(), c.quic, tok, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	waitFor(t, "two agents", func() bool { return len(c.connected(t)) == 2 })
	edge, simID := c.idOf(t, "edge1"), c.idOf(t, "sim")

	script := "- t:\n    - workers: [\"zone=y\"]\n  followup: fail\n"
	form, ct := testhttp.Multipart(map[string]string{"name": "byzone"}, "file", "app.yaml", []byte(script))
	if status, b := c.do(t, "POST", "/v1/scripts/app", form, ct); status != 200 && status != 201 {
		t.Fatalf("APP script: %d %s", status, b)
	}
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true", "metadata": `{"tag":"t"}`})
	call := func() (int, string) {
		return c.invoke(t, "_", "hello", `{"args":{"name":"Ada"},"scheduling":{"language":"app","script":"byzone"}}`)
	}
	if status, body := call(); status != 503 {
		t.Fatalf("no agent carries zone=y yet: %d %s, want 503", status, body)
	}
	// edge1 says zone=x; the operator says zone=y.
	if st := c.control(t, "POST", "/v1/admin/agents/"+edge+"/labels", `{"set":["zone=y"]}`); len(st.Labels) != 1 || st.Labels[0] != "zone=y" {
		t.Fatalf("label: %+v", st)
	}
	waitFor(t, "edge1's desired set with the function its label qualifies it for", func() bool { return lastDesired(edge1) == "1" })
	for range 5 {
		if status, body := call(); status != 200 || !strings.Contains(body, "Hello Ada") {
			t.Fatalf("labelled zone=y by the operator, edge1 did not run it: %d %s", status, body)
		}
	}
	shown := false
	for _, a := range c.agents(t) {
		if a.ID == edge {
			shown = strings.Join(a.Labels, ",") == "zone=y"
		}
	}
	if !shown {
		t.Fatalf("GET /v1/agents does not show edge1's effective labels: %+v", c.agents(t))
	}

	// The same label on the sim agent: it may take them too; removed from
	// edge1, its own zone=x applies again and only the sim agent qualifies.
	c.control(t, "POST", "/v1/admin/agents/"+simID+"/labels", `{"set":["zone=y"]}`)
	c.control(t, "POST", "/v1/admin/agents/"+edge+"/labels", `{"remove":["zone"]}`)
	for range 5 {
		if status, body := call(); status != 200 || !strings.Contains(body, `"sim":true`) {
			t.Fatalf("zone=y only on the sim agent, it did not run the call: %d %s", status, body)
		}
	}

	waitFor(t, "edge1's desired set without the function it no longer qualifies for", func() bool { return lastDesired(edge1) == "0" })

	// tag=t set from the controller assigns the function tagged t.
	c.control(t, "POST", "/v1/admin/agents/"+edge+"/labels", `{"set":["tag=t"]}`)
	waitFor(t, "edge1's desired set with the function tagged t", func() bool { return lastDesired(edge1) == "1" })
}

var desiredRE = regexp.MustCompile(`msg="desired set updated".* functions=(\d+)`)

// lastDesired is the size of the last desired set an agent logged.
func lastDesired(p *proc) string {
	m := desiredRE.FindAllStringSubmatch(p.Log(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// TestAgentMemoryCap: an agent that reports a huge memory draws every
// invocation under the default policy; once the operator caps what the
// scheduler believes of it, an honest agent gets them.
func TestAgentMemoryCap(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	tok := c.joinToken(t, "")
	startAgent(t, c, tok, "edge1", t.TempDir())
	liar, err := dialSimAgentMem(t.Context(), c.quic, tok, "liar", 1<<50, 1<<50)
	if err != nil {
		t.Fatal(err)
	}
	defer liar.Close()
	waitFor(t, "two agents", func() bool { return len(c.connected(t)) == 2 })
	liarID := c.idOf(t, "liar")
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})

	lied := func(n int) (liarRuns int) {
		t.Helper()
		for range n {
			status, body := c.invoke(t, "_", "hello", `{"args":{"name":"Ada"}}`)
			if status != 200 {
				t.Fatalf("invoke: %d %s", status, body)
			}
			if strings.Contains(body, `"sim":true`) {
				liarRuns++
			}
		}
		return liarRuns
	}
	if n := lied(10); n != 10 {
		t.Fatalf("uncapped, the liar ran %d of 10 calls; the test expects the lie to work first", n)
	}
	if status, b := c.do(t, "PUT", "/v1/admin/agents/"+liarID+"/cap", strings.NewReader(`{"mem_cap_bytes":16777216}`), "application/json"); status != 200 {
		t.Fatalf("cap: %d %s", status, b)
	}
	if n := lied(10); n != 0 {
		t.Fatalf("capped at 16 MiB, the liar still ran %d of 10 calls", n)
	}
	for _, a := range c.agents(t) {
		if a.ID == liarID && a.MemBoundBytes != 1<<24 {
			t.Fatalf("GET /v1/agents: liar's mem_bound_bytes = %d, want %d", a.MemBoundBytes, 1<<24)
		}
	}
}
