package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// manyFunctions is what an agent process holds with 100 distinct small
// Rust functions (hello_fl_rust, 72 KB, each made unique) pushed to it and
// each invoked once.
type manyFunctions struct {
	// Agent RSS, bytes: idle, right after the pushes and 2 s later
	// (settled: the agent returned what it freed to the system), right
	// after the calls and settled.
	idle, afterPush, pushSettled, afterCalls, settled int64
	// settledAnon and settledFile split settled: anonymous memory (heap,
	// compiled code) and mapped files (the binary, the state database).
	settledAnon, settledFile int64
	// firstCall is the p50 of the first calls (each loads its function:
	// from the disk cache where the push compiled it); afterEviction the
	// first call of the function used longest ago, once every other was
	// called (evicted from memory by then when the cache is bounded), and
	// warm a call of the function just called.
	firstCall, afterEviction, warm time.Duration
}

func runManyFunctions(t testing.TB, binDir string, n int) manyFunctions {
	t.Helper()
	defer func(old string) { bin = old }(bin)
	bin = binDir
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "hello_fl_rust.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	agent := startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir())
	pid := agent.Cmd.Process.Pid
	var m manyFunctions
	m.idle = procRSS(pid)
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		if status, body := c.uploadCode(t, "_", name, padModule(code, len(code)+64, name), map[string]string{"wait_for_workers": "true"}); status != 201 {
			t.Fatalf("upload %s: %d %s", name, status, body)
		}
	}
	m.afterPush = procRSS(pid)
	time.Sleep(2 * time.Second)
	m.pushSettled = procRSS(pid)
	call := func(i int) time.Duration {
		t0 := time.Now()
		status, out := c.invoke(t, "_", fmt.Sprintf("f%03d", i), `{"args":{"name":"Ada"}}`)
		took := time.Since(t0)
		if status != 200 || out != `{"data":{"payload":"Hello Ada!"}}` {
			t.Fatalf("f%03d: %d %s", i, status, out)
		}
		return took
	}
	var first []time.Duration
	for i := range n {
		first = append(first, call(i))
	}
	m.afterCalls = procRSS(pid)
	m.firstCall = pct(first, .5)
	m.afterEviction = call(0)
	m.warm = call(0)
	time.Sleep(2 * time.Second)
	m.settled = procRSS(pid)
	m.settledAnon, m.settledFile = procStatus(pid, "RssAnon"), procStatus(pid, "RssFile")
	return m
}

// TestAgentRSSBoundedManyFunctions (issue 16 point 6): an agent process
// with 100 distinct small Rust functions pushed and each invoked holds at
// most 40 MiB — the target, measured at 38–39 MiB; this test fails above
// 48 MiB, a regression bound with room for the file-backed pages (26 MiB:
// the binary and the state file) that the page cache decides, while the
// anonymous memory Wisp controls must stay within 16 MiB (12 measured,
// 65 before issue 16). Pushed code is compiled into the disk cache, not
// memory, and the compiled modules in memory are bounded by their
// estimated size.
// With WISP_E2E_BASELINE_BIN naming a directory of other binaries, the
// same is measured on them in the same run (reported, not asserted).
func TestAgentRSSBoundedManyFunctions(t *testing.T) {
	if raceEnabled {
		t.Skip("RSS means little under the race detector; make test runs this without it")
	}
	if testing.Short() {
		t.Skip("100 uploads")
	}
	runs := []struct{ name, dir string }{{"current", bin}}
	if base := os.Getenv("WISP_E2E_BASELINE_BIN"); base != "" {
		runs = append(runs, struct{ name, dir string }{"baseline", base})
	}
	for _, run := range runs {
		m := runManyFunctions(t, run.dir, 100)
		t.Logf("%s: agent RSS idle %d MiB, after 100 pushes %d MiB (settled %d), after a call of each %d MiB, settled %d MiB (anonymous %d, files %d); first calls p50 %v, first call after eviction %v, warm %v",
			run.name, m.idle>>20, m.afterPush>>20, m.pushSettled>>20, m.afterCalls>>20, m.settled>>20, m.settledAnon>>20, m.settledFile>>20, m.firstCall.Round(10*time.Microsecond), m.afterEviction.Round(10*time.Microsecond), m.warm.Round(10*time.Microsecond))
		if run.name == "current" && (m.settled > 48<<20 || m.pushSettled > 48<<20 || m.settledAnon > 16<<20) {
			t.Errorf("agent RSS settled %d MiB after the pushes, %d MiB after the calls (anonymous %d); want at most 48 (target 40) and 16 anonymous", m.pushSettled>>20, m.settled>>20, m.settledAnon>>20)
		}
	}
}
