package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// TestFunctionConfig (issue 14): a FunLess-ABI function calls a loopback
// HTTP server only when allowed — denied by the empty default (FunLess's
// status 0, and the activation's log says why), allowed by its own
// allow_hosts, then by the controller's --default-allow-hosts; a C reactor
// (wasi-libc getenv) and a WASI command read their config env; bad config
// is refused with 400 and changes nothing; and after a partition and an
// agent restart the local API still runs the functions with their env and
// allowlist.
func TestFunctionConfig(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"pong":true}`)
	}))
	defer srv.Close()
	args := `{"args":{"u":"` + srv.URL + `/x"}}`

	ctlDir, edgeDir := t.TempDir(), t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	edge := startEdgeAgent(t, c.quic, c.joinToken(t, ""), edgeDir)
	localURL := edge.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(edgeDir, "local.token"))

	env := `{"env":{"GREETING":"hé \"there\"","OTHER":"x"}}`
	c.upload(t, "_", "nohosts", "http", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "ownhosts", "http", map[string]string{"config": `{"allow_hosts":["*.example.com","127.0.0.1"]}`, "wait_for_workers": "true"})
	c.upload(t, "_", "envc", "env_c", map[string]string{"config": env, "wait_for_workers": "true"})
	c.upload(t, "_", "envcmd", "envcmd_c", map[string]string{"config": env, "wait_for_workers": "true"})

	// Denied: the default allowlist is empty. The guest sees FunLess's
	// transport failure (status 0) and the activation's log says why.
	status, body, id := invokeWithID(t, c.url+"/v1/fn/_/nohosts", c.admin, args)
	if status != 422 || !strings.Contains(body, "transport failure") {
		t.Fatalf("denied call: %d %s", status, body)
	}
	if hits.Load() != 0 {
		t.Fatal("a denied call reached the server")
	}
	waitFor(t, "the denied activation's log line", func() bool {
		return strings.Contains(activationLogs(t, c, id), "refused: host not on the function's allowlist")
	})

	// Allowed by the function's own allow_hosts.
	status, body, _ = invokeWithID(t, c.url+"/v1/fn/_/ownhosts", c.admin, args)
	if status != 200 || body != `{"data":{"pong":true}}` || hits.Load() != 1 {
		t.Fatalf("allowed call: %d %s (%d hits)", status, body, hits.Load())
	}

	// env reaches a wasi-libc reactor and a WASI command.
	for _, fn := range []string{"envc", "envcmd"} {
		status, body = c.invoke(t, "_", fn, `{"args":{"name":"GREETING"}}`)
		if status != 200 || body != `{"data":{"value":"hé \"there\""}}` {
			t.Fatalf("%s: %d %s", fn, status, body)
		}
		status, body = c.invoke(t, "_", fn, `{"args":{"name":"HOME"}}`)
		if status != 200 || body != `{"data":{"value":null}}` {
			t.Fatalf("%s sees a variable it was not given: %d %s", fn, status, body)
		}
	}

	// Bad config: 400 naming the problem, nothing changed.
	before := getConfig(t, c, "envc")
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "env_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ config, want string }{
		{`{"env":{"A":"1"},"allowhosts":["a.test"]}`, "allowhosts"},
		{`{"allow_hosts":["bad host"]}`, `allow_hosts[0] \"bad host\"`},
		{`{"allow_hosts":["*.com"]}`, "wildcard"},
		{`{"allow_hosts":["a.test:0"]}`, "port"},
		{`{"env":{"1A":"x"}}`, `\"1A\"`},
	} {
		form, ct := testhttp.Multipart(map[string]string{"config": tc.config}, "code", "env_c.wasm", code)
		status, b := c.do(t, "PUT", "/v1/fn/_/envc", form, ct)
		if status != 400 || !strings.Contains(string(b), "Invalid config") || !strings.Contains(string(b), tc.want) {
			t.Errorf("config %s: %d %s, want 400 naming %s", tc.config, status, b, tc.want)
		}
		if after := getConfig(t, c, "envc"); after != before {
			t.Fatalf("a refused config changed the function: %s, was %s", after, before)
		}
	}

	// The controller's default allowlist: the function without allow_hosts
	// may now reach the server.
	quicAddr := c.quic
	c.Stop()
	c = startController(t, ctlDir, "", quicAddr, "--default-allow-hosts", "127.0.0.1")
	waitFor(t, "the agent back", func() bool { _, ok := c.connected(t)["edge"]; return ok })
	status, body, _ = invokeWithID(t, c.url+"/v1/fn/_/nohosts", c.admin, args)
	if status != 200 || body != `{"data":{"pong":true}}` || hits.Load() != 2 {
		t.Fatalf("call allowed by the default: %d %s (%d hits)", status, body, hits.Load())
	}
	// The desired set carries the default too: wait until the agent has it.
	waitFor(t, "the default allowlist at the edge", func() bool {
		status, _ := localInvoke(t, localURL, localToken, "nohosts", args)
		return status == 200
	})

	// Partition, then an agent restart without its controller: the local
	// API still runs the functions with their env and allowlists.
	c.Stop()
	edge.Kill()
	edge = startEdgeAgentOffline(t, quicAddr, edgeDir)
	localURL = edge.Await(`msg="local invoke API" addr=(\S+)`)
	for _, fn := range []string{"envc", "envcmd"} {
		status, body := localInvoke(t, localURL, localToken, fn, `{"args":{"name":"GREETING"}}`)
		if status != 200 || !strings.Contains(body, `{"value":"hé \"there\""}`) {
			t.Fatalf("%s at the partitioned, restarted edge: %d %s", fn, status, body)
		}
	}
	n := hits.Load()
	for _, fn := range []string{"ownhosts", "nohosts"} {
		status, body := localInvoke(t, localURL, localToken, fn, args)
		if status != 200 || !strings.Contains(body, `{"pong":true}`) {
			t.Fatalf("%s at the partitioned, restarted edge: %d %s", fn, status, body)
		}
	}
	if hits.Load() != n+2 {
		t.Fatalf("the server saw %d calls from the edge, want 2", hits.Load()-n)
	}
}

func invokeWithID(t *testing.T, url, token, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Wisp-Activation-Id")
}

// activationLogs is the text of an activation's log lines ("" until it is
// recorded).
func activationLogs(t *testing.T, c *controller, id string) string {
	t.Helper()
	status, b := c.do(t, "GET", "/v1/activations/"+id, nil, "")
	if status != 200 {
		return ""
	}
	var rec struct {
		Data struct{ Logs []struct{ Text string } }
	}
	json.Unmarshal(b, &rec)
	var texts []string
	for _, l := range rec.Data.Logs {
		texts = append(texts, l.Text)
	}
	return strings.Join(texts, "\n")
}

// getConfig is the config GET shows of function fn of module _.
func getConfig(t *testing.T, c *controller, fn string) string {
	t.Helper()
	status, b := c.do(t, "GET", "/v1/fn/_/"+fn, nil, "")
	var got struct {
		Data struct{ Config json.RawMessage }
	}
	if status != 200 || json.Unmarshal(b, &got) != nil || len(got.Data.Config) == 0 {
		t.Fatalf("GET %s: %d %s", fn, status, b)
	}
	return string(got.Data.Config)
}
