package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// TestRollbackNeedsNoTransfer: update a function (hello_c, then echo_c),
// roll it back, and the old result comes back without any code moving:
// the agent kept the old version's code (no push, no NeedCode fetch, no
// byte sent by the controller). Rolling the rollback back moves none
// either.
func TestRollbackNeedsNoTransfer(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	c := startController(t, dataDir, "", "127.0.0.1:0")
	edge := startAgent(t, c, c.joinToken(t, ""), "edge", t.TempDir())
	metricsAddr := edge.Await(`msg=metrics addr=(\S+)`)

	const args = `{"args":{"name":"Ada"}}`
	v1, v2 := "Hello Ada!", `{"data":{"name":"Ada"}}`
	invoke := func(want string) {
		t.Helper()
		status, out := c.invoke(t, "_", "f", args)
		if status != 200 || !strings.Contains(out, want) {
			t.Fatalf("invoke: %d %s, want %s", status, out, want)
		}
	}
	c.upload(t, "_", "f", "hello_c", map[string]string{"wait_for_workers": "true"})
	invoke(v1)

	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "echo_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	form, ct := testhttp.Multipart(map[string]string{"wait_for_workers": "true"}, "code", "f.wasm", code)
	if status, body := c.do(t, "PUT", "/v1/fn/_/f", form, ct); status != 200 {
		t.Fatalf("update: %d %s", status, body)
	}
	invoke(v2)
	waitFor(t, "edge holds both versions' code", func() bool { return c.connected(t)["edge"].Digests == 2 })

	transfers := func() (pushes, fetches, bytes int) {
		pushes, _ = strconv.Atoi(metric(t, metricsAddr, `wisp_agent_code_received_total{how="push"}`))
		fetches, _ = strconv.Atoi(metric(t, metricsAddr, `wisp_agent_code_received_total{how="fetch"}`))
		bytes, _ = strconv.Atoi(c.metric(t, "wisp_controller_code_sent_bytes_total"))
		return
	}
	p0, f0, b0 := transfers()
	if p0+f0 < 2 || b0 == 0 {
		t.Fatalf("before the rollback: %d pushes, %d fetches, %d bytes sent; want the two versions' code counted", p0, f0, b0)
	}

	status, body := c.do(t, "POST", "/v1/fn/_/f/rollback", nil, "")
	if status != 200 || !strings.Contains(string(body), `"from":1`) || !strings.Contains(string(body), `"version":3`) {
		t.Fatalf("rollback: %d %s", status, body)
	}
	invoke(v1)
	for range 5 {
		invoke(v1)
	}
	status, body = c.do(t, "POST", "/v1/fn/_/f/rollback", strings.NewReader(`{"to":2}`), "application/json")
	if status != 200 || !strings.Contains(string(body), `"version":4`) {
		t.Fatalf("rollback to 2: %d %s", status, body)
	}
	invoke(v2)

	if p, f, b := transfers(); p != p0 || f != f0 || b != b0 {
		t.Fatalf("rollbacks moved code: pushes %d→%d, fetches %d→%d, controller bytes sent %d→%d", p0, p, f0, f, b0, b)
	}
	if n := c.connected(t)["edge"].Digests; n != 2 {
		t.Fatalf("edge holds %d digests after the rollbacks, want 2", n)
	}
	status, body = c.do(t, "GET", "/v1/fn/_/f/versions", nil, "")
	if status != 200 || strings.Count(string(body), `"version":`) != 4 {
		t.Fatalf("versions: %d %s", status, body)
	}
}
