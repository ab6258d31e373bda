package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwasm"
)

// Memory bounds of the hostile-module test, with headroom over what the
// processes take here (docs/decisions.md): an unprotected controller or
// agent took gigabytes on the same modules.
const (
	hostileControllerPeak = 384 << 20
	hostileAgentPeak      = 128 << 20
)

// TestHostileModules uploads every hostile module of the catalogue through
// the real REST API to a real controller with two real agents: each is
// refused at upload with 400 naming its limit, or (within every static
// limit, but too costly to compile) accepted and then refused by the
// agents' compile budget on its first invocation with a typed error. Every
// process stays up and within its memory bound, and a normal function
// answers as fast as before.
func TestHostileModules(t *testing.T) {
	ctlDir := t.TempDir()
	// The controller validates with the interpreter; a 256 MiB budget is
	// what refuses validate_adds (680 MB to validate). The agents' budgets
	// are small so that the test is quick: their optimising compiler needs
	// 2.3 GB for compile_br_tables and minutes for compile_locals.
	c := startControllerEnv(t, ctlDir, "", "127.0.0.1:0", []string{"WISP_COMPILE_MEMORY=256MiB"})
	token := c.joinToken(t, "")
	agentEnv := []string{"WISP_COMPILE_MEMORY_MIB=384", "WISP_COMPILE_TIMEOUT=5s"}
	edges := []*proc{
		startAgentEnv(t, c, token, "edge1", t.TempDir(), agentEnv),
		startAgentEnv(t, c, token, "edge2", t.TempDir(), agentEnv),
	}
	waitFor(t, "two agents connected", func() bool { return len(c.connected(t)) == 2 })
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	before := helloLatency(t, c, 40)

	// Refused at upload, naming the limit. The big ones go three at a time.
	type upload struct {
		name, limit string
		code        []byte
	}
	var refused []upload
	for _, h := range testwasm.HostileModules() {
		if h.Limit != "" {
			refused = append(refused, upload{h.Name, h.Limit, h.Code})
		}
	}
	for _, f := range []struct{ fixture, limit string }{
		{"table_grow", "table_entries"}, {"table_grow_max", "table_entries"},
		{"table_static", "table_entries"}, {"tables_many", "tables"},
	} {
		code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", f.fixture+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		refused = append(refused, upload{f.fixture, f.limit, code})
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 3)
	for _, u := range refused {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			status, body := c.uploadCode(t, "_", u.name, u.code, nil)
			want := "(module limit " + u.limit + ")"
			if u.limit == "invalid" {
				want = "Invalid wasm module"
			}
			if status != 400 || !strings.Contains(string(body), want) {
				t.Errorf("upload %s (%d bytes): %d %s, want 400 containing %q", u.name, len(u.code), status, body, want)
			}
		}()
	}
	wg.Wait()

	// Within every static limit; the controller's budget refuses one, the
	// agents' budgets the others when they are first invoked.
	status, body := c.uploadCode(t, "_", "validate_adds", hostileCode(t, "validate_adds"), nil)
	if status != 400 || !strings.Contains(string(body), "compile") || !strings.Contains(string(body), "256 MiB") {
		t.Errorf("upload validate_adds: %d %s, want 400 naming the compile budget", status, body)
	}
	for _, name := range []string{"compile_br_tables", "compile_locals", "validate_adds_3m"} {
		if status, body := c.uploadCode(t, "_", name, hostileCode(t, name), nil); status != 201 {
			t.Fatalf("upload %s: %d %s", name, status, body)
		}
	}
	for _, tc := range []struct{ fn, want string }{
		// 2.3 GB over tens of seconds: whichever budget it meets first.
		{"compile_br_tables", "than the budget of"},
		// Minutes and more than 384 MiB: time or memory, whichever first.
		{"compile_locals", "the budget of"},
	} {
		for range 2 { // the second answer is the remembered verdict
			start := time.Now()
			status, out := c.invoke(t, "_", tc.fn, `{}`)
			if status != 500 || !strings.Contains(out, "compile budget") || !strings.Contains(out, tc.want) {
				t.Errorf("invoke %s: %d %s, want 500 with %q", tc.fn, status, out, tc.want)
			}
			t.Logf("invoke %s: %d after %v", tc.fn, status, time.Since(start).Round(time.Millisecond))
		}
	}

	// A table with a small maximum is fine, and table.grow honours it.
	c.upload(t, "_", "table_capped", "table_capped", nil)
	if status, out := c.invoke(t, "_", "table_capped", `{}`); status != 200 || !strings.Contains(out, `"grown":true`) {
		t.Errorf("table_capped: %d %s", status, out)
	}

	// Everyone is up, within bounds, and hello is as fast as before.
	for _, p := range append([]*proc{c.proc}, edges...) {
		select {
		case <-p.Done():
			t.Fatalf("%s exited", p.Name)
		default:
		}
	}
	if peak := procPeakRSS(c.Cmd.Process.Pid); peak > hostileControllerPeak || peak == 0 {
		t.Errorf("controller peak RSS %d MiB, bound %d MiB", peak>>20, hostileControllerPeak>>20)
	} else {
		t.Logf("controller peak RSS %d MiB (bound %d MiB)", peak>>20, hostileControllerPeak>>20)
	}
	for _, e := range edges {
		if peak := procPeakRSS(e.Cmd.Process.Pid); peak > hostileAgentPeak || peak == 0 {
			t.Errorf("%s peak RSS %d MiB, bound %d MiB", e.Name, peak>>20, hostileAgentPeak>>20)
		} else {
			t.Logf("%s peak RSS %d MiB (bound %d MiB)", e.Name, peak>>20, hostileAgentPeak>>20)
		}
	}
	if len(c.connected(t)) != 2 {
		t.Fatalf("agents connected after the attack: %v", c.connected(t))
	}
	// "Afterwards": once no compile worker of any of them runs any more.
	waitFor(t, "every compile worker gone", func() bool {
		for _, p := range append([]*proc{c.proc}, edges...) {
			if len(childrenOf(p.Cmd.Process.Pid)) > 0 {
				return false
			}
		}
		return true
	})
	after := helloLatency(t, c, 40)
	t.Logf("hello p50 %v before, %v after", before, after)
	if after > 2*before+2*time.Millisecond {
		t.Errorf("hello p50 %v after the attack, %v before", after, before)
	}
}

func hostileCode(t *testing.T, name string) []byte {
	t.Helper()
	i := slices.IndexFunc(testwasm.HostileModules(), func(h testwasm.Hostile) bool { return h.Name == name })
	if i < 0 {
		t.Fatalf("no hostile module %s", name)
	}
	return testwasm.HostileModules()[i].Code
}

// helloLatency is the median of n invocations of hello.
func helloLatency(t *testing.T, c *controller, n int) time.Duration {
	t.Helper()
	d := make([]time.Duration, n)
	for i := range d {
		start := time.Now()
		status, out := c.invoke(t, "_", "hello", `{"args":{"name":"Ada"}}`)
		d[i] = time.Since(start)
		if status != 200 {
			t.Fatalf("hello: %d %s", status, out)
		}
	}
	return pct(d, 0.5)
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == fmt.Sprint(pid) {
			var kid int
			fmt.Sscan(e.Name(), &kid)
			kids = append(kids, kid)
		}
	}
	return kids
}

// TestRecursionWithoutLoopStopped: a 117-byte function that recurses for
// ever without a loop (six calls per level, 64 levels), uploaded and
// invoked through the REST API, is stopped at the agent's timeout like a
// loop, call after call; the agent keeps serving. Before the stop check
// at function entry it ran for ever and held its slot and a core.
func TestRecursionWithoutLoopStopped(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir(), "--timeout", "300ms")
	waitFor(t, "the agent", func() bool { return len(c.connected(t)) == 1 })
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "recurse", "recurse", map[string]string{"wait_for_workers": "true"})
	for range 3 { // one after the other: the function is allowed one instance
		status, body := c.invoke(t, "_", "recurse", `{}`)
		if status == 200 || !strings.Contains(body, "stopped after") {
			t.Fatalf("endless recursion: %d %s, want it stopped at the timeout", status, body)
		}
	}
	if status, body := c.invoke(t, "_", "hello", `{"args":{"name":"Ada"}}`); status != 200 || !strings.Contains(body, "Hello Ada") {
		t.Fatalf("after the recursion: %d %s", status, body)
	}
}
