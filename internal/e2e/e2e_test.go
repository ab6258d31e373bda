package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// TestEndToEnd: one controller, two agents, functions created and invoked
// through the REST API, an agent killed, an agent restarted, the controller
// restarted — on the embedded store and on Postgres.
func TestEndToEnd(t *testing.T) {
	for _, storeKind := range []string{"embedded", "postgres"} {
		t.Run(storeKind, func(t *testing.T) {
			dsn := ""
			if storeKind == "postgres" {
				dsn = freshSchema(t)
			}
			runScenario(t, dsn)
		})
	}
}

func runScenario(t *testing.T, dsn string) {
	ctlDir := t.TempDir()
	c := startController(t, ctlDir, dsn, "127.0.0.1:0")
	token := c.joinToken(t, dsn)
	edge1Dir, edge2Dir := t.TempDir(), t.TempDir()
	edge1 := startAgent(t, c, token, "edge1", edge1Dir)
	startAgent(t, c, token, "edge2", edge2Dir)
	waitFor(t, "two agents connected", func() bool { return len(c.connected(t)) == 2 })

	c.upload(t, "_", "hello", "hello_c", nil)
	c.upload(t, "_", "hello_go", "hello_go", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "echo", "echo_rust", nil)
	c.upload(t, "_", "oops", "guest_error", nil)
	c.upload(t, "_", "boom", "trap", nil)

	for _, tc := range []struct {
		fn, body   string
		status     int
		wantInBody string
	}{
		{"hello", `{"args":{"name":"Ada"}}`, 200, `{"data":{"payload":"Hello Ada!"}}`},
		{"hello_go", `{"args":{"name":"Ada"}}`, 200, `{"data":{"payload":"Hello Ada!"}}`},
		{"echo", `{"args":{"x":[1,2]}}`, 200, `{"data":{"x":[1,2]}}`},
		{"hello", ``, 200, `Hello World!`},
		{"oops", `{}`, 422, `"Error: something went wrong"`},
		{"boom", `{}`, 500, `divide by zero`},
	} {
		status, body := c.invoke(t, "_", tc.fn, tc.body)
		if status != tc.status || !strings.Contains(body, tc.wantInBody) {
			t.Fatalf("invoke %s %s: %d %s, want %d containing %s", tc.fn, tc.body, status, body, tc.status, tc.wantInBody)
		}
	}

	// An APP script routes to a named agent.
	routeTo := func(name string) {
		t.Helper()
		script := fmt.Sprintf("- default:\n    - workers: [%s]\n  followup: fail\n", name)
		status, body := postScript(t, c, "to_"+name, script)
		if status != 201 && status != 409 {
			t.Fatalf("script: %d %s", status, body)
		}
		status, out := c.invoke(t, "_", "hello", `{"args":{"name":"APP"},"scheduling":{"language":"app","script":"to_`+name+`"}}`)
		if status != 200 || !strings.Contains(out, "Hello APP!") {
			t.Fatalf("APP-routed invoke to %s: %d %s", name, status, out)
		}
	}
	routeTo("edge2")

	// Code reaches agents in the background (only hello_go waited for
	// them). The restart check below is about code edge1 had compiled, so
	// let it hold all five functions before it dies.
	waitFor(t, "edge1 holds the five functions", func() bool { return c.connected(t)["edge1"].Digests == 5 })

	// kill -9 one agent: once the controller noticed, the invocations go
	// to the other. (A call the controller sends to the dead agent before
	// it notices is answered 502, "may have run", and never run twice:
	// TestPoisonPillStopsAtOneAgent.)
	ids := c.connected(t)
	edge1.Kill()
	waitFor(t, "the controller to notice edge1 is gone", func() bool { _, ok := c.connected(t)["edge1"]; return !ok })
	for i := range 10 {
		if status, body := c.invoke(t, "_", "hello", `{"args":{"name":"K"}}`); status != 200 {
			t.Fatalf("invocation %d after kill -9: %d %s", i, status, body)
		}
	}

	// Restart it on the same data dir, without a join token: same identity,
	// and its first call there is a disk-cache load, not a compile.
	edge1 = startAgent(t, c, "", "edge1", edge1Dir)
	waitFor(t, "edge1 back", func() bool {
		a, ok := c.connected(t)["edge1"]
		return ok && a.ID == ids["edge1"].ID
	})
	metricsAddr := edge1.Await(`msg=metrics addr=(\S+)`)
	routeTo("edge1")
	if got := metric(t, metricsAddr, `wisp_agent_module_loads_total{source="cold"}`); got != "" && got != "0" {
		t.Errorf("restarted agent compiled from scratch (%s cold loads)", got)
	}
	if got := metric(t, metricsAddr, `wisp_agent_module_loads_total{source="disk"}`); got == "" || got == "0" {
		t.Errorf("restarted agent: no disk-cache load recorded (%q)", got)
	}

	// Restart the controller on the same ports: agents reconnect by themselves.
	quicAddr := c.quic
	c.Stop()
	c = startController(t, ctlDir, dsn, quicAddr)
	waitFor(t, "agents reconnect to the restarted controller", func() bool { return len(c.connected(t)) == 2 })
	if status, body := c.invoke(t, "_", "hello", `{"args":{"name":"again"}}`); status != 200 {
		t.Fatalf("after controller restart: %d %s", status, body)
	}
}

func postScript(t *testing.T, c *controller, name, yaml string) (int, []byte) {
	t.Helper()
	body, ct := testhttp.Multipart(map[string]string{"name": name}, "file", name+".yaml", []byte(yaml))
	return c.do(t, "POST", "/v1/scripts/app", body, ct)
}

// freshSchema makes an empty Postgres schema for one test and returns a DSN
// whose search_path points at it (internal/testing/testpg).
func freshSchema(t *testing.T) string { return testpg.Schema(t, 0) }
