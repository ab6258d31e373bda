package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretAnswer is what secret_echo answers for value (never the value).
func secretAnswer(value string) string {
	h := fnv.New32a()
	h.Write([]byte(value))
	return fmt.Sprintf(`{"set":true,"len":%d,"fnv1a":"%08x"}`, len(value), h.Sum32())
}

// TestSecrets (issue 14): a module secret set over REST reaches a WASI
// command as its environment, through the controller and on the edge (local
// API), also after a partition and an agent restart; changing it re-syncs
// the agent. The value is in none of: the controller's and the agent's
// logs (debug level), their store files, the activation records, the GET
// answers and the metrics.
func TestSecrets(t *testing.T) {
	ctlDir, edgeDir := t.TempDir(), t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	token := c.joinToken(t, "")
	edge := startEdgeAgent(t, c.quic, token, edgeDir)
	localURL := edge.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(edgeDir, "local.token"))

	const value, value2 = "e2e-S3CRET-value-5d2a91", "e2e-S3CRET-rotated-77c0"
	put := func(v string) {
		t.Helper()
		if status, b := c.do(t, "PUT", "/v1/secrets/_/API_KEY", strings.NewReader(`{"value":"`+v+`"}`), "application/json"); status != 200 {
			t.Fatalf("PUT secret: %d %s", status, b)
		}
	}
	// A config naming a secret the module lacks is refused, nothing made.
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "secret_echo.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if status, b := c.uploadCode(t, "_", "secret_echo", code, map[string]string{"config": `{"secrets":["API_KEY"]}`}); status != 400 || !strings.Contains(string(b), "has no secret API_KEY") {
		t.Fatalf("create naming a missing secret: %d %s", status, b)
	}
	put(value)
	c.upload(t, "_", "secret_echo", "secret_echo", map[string]string{"config": `{"secrets":["API_KEY"]}`, "wait_for_workers": "true"})

	// Through the controller.
	if status, out := c.invoke(t, "_", "secret_echo", `{}`); status != 200 || !strings.Contains(out, secretAnswer(value)) {
		t.Fatalf("invoke through the controller: %d %s; want %s", status, out, secretAnswer(value))
	}
	// On the edge, from the desired set.
	waitFor(t, "the edge to run the function with its secret", func() bool {
		status, out := localInvoke(t, localURL, localToken, "secret_echo", `{}`)
		return status == 200 && strings.Contains(out, secretAnswer(value))
	})
	// A new value re-syncs the desired set.
	put(value2)
	waitFor(t, "the edge to get the new value", func() bool {
		status, out := localInvoke(t, localURL, localToken, "secret_echo", `{}`)
		return status == 200 && strings.Contains(out, secretAnswer(value2))
	})
	if status, out := c.invoke(t, "_", "secret_echo", `{}`); status != 200 || !strings.Contains(out, secretAnswer(value2)) {
		t.Fatalf("invoke after the change: %d %s", status, out)
	}

	// Partition, and the agent restarts without the controller: the
	// function still has its secret.
	quicAddr := c.quic
	ctlLog := c.Log()
	c.Stop()
	edge.Kill()
	edgeLog := edge.Log()
	edge = startEdgeAgentOffline(t, quicAddr, edgeDir)
	localURL = edge.Await(`msg="local invoke API" addr=(\S+)`)
	if status, out := localInvoke(t, localURL, localToken, "secret_echo", `{}`); status != 200 || !strings.Contains(out, secretAnswer(value2)) {
		t.Fatalf("local invoke after a partition and a restart: %d %s", status, out)
	}

	// The agent's state file holds no value; its key is a file of its own.
	raw, err := os.ReadFile(filepath.Join(edgeDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(edgeDir, "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the agent's secrets key: %v %v", fi, err)
	}

	// Heal; the outbox drains.
	c = startController(t, ctlDir, "", quicAddr)
	waitFor(t, "the edge activations recorded", func() bool {
		n := 0
		for _, a := range listActivations(t, c, "secret_echo") {
			if a.Source == "local-api" {
				n++
			}
		}
		return n >= 3
	})
	var seen bytes.Buffer
	for _, path := range []string{"/v1/activations?function=secret_echo&limit=1000", "/v1/secrets/_", "/v1/fn/_/secret_echo", "/v1/fn/_", "/v1/agents"} {
		status, b := c.do(t, "GET", path, nil, "")
		if status != 200 {
			t.Fatalf("GET %s: %d %s", path, status, b)
		}
		seen.Write(b)
	}
	for _, a := range listActivations(t, c, "secret_echo") {
		status, b := c.do(t, "GET", "/v1/activations/"+a.ID, nil, "")
		if status != 200 {
			t.Fatalf("GET activation: %d", status)
		}
		seen.Write(b)
	}
	if resp, err := c.getMetrics(); err == nil {
		seen.ReadFrom(resp.Body)
		resp.Body.Close()
	}
	var list struct {
		Data []struct{ Name string } `json:"data"`
	}
	_, b := c.do(t, "GET", "/v1/secrets/_", nil, "")
	if json.Unmarshal(b, &list); len(list.Data) != 1 || list.Data[0].Name != "API_KEY" {
		t.Fatalf("GET /v1/secrets/_: %s", b)
	}
	ctlDB, err := os.ReadFile(filepath.Join(ctlDir, "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string][]byte{
		"the controller's log (before the partition)": []byte(ctlLog),
		"the controller's log (after)":                []byte(c.Log()),
		"the agent's log (before the restart)":        []byte(edgeLog),
		"the agent's log (after)":                     []byte(edge.Log()),
		"the agent's state file":                      raw,
		"the controller's store file":                 ctlDB,
		"the REST answers and metrics":                seen.Bytes(),
	} {
		for _, v := range []string{value, value2} {
			if bytes.Contains(text, []byte(v)) {
				t.Errorf("%s holds a secret's value", what)
			}
		}
	}

	// A FunLess-ABI reactor (wasi-libc, getenv) reads a secret too, through
	// the controller and at the edge. env_c answers the value itself, so
	// this runs after the checks above, with a secret of its own.
	const reactorValue = "reactor-visible-value-31"
	waitFor(t, "the agent back", func() bool { return len(c.connected(t)) == 1 })
	if status, b := c.do(t, "PUT", "/v1/secrets/_/REACTOR_KEY", strings.NewReader(`{"value":"`+reactorValue+`"}`), "application/json"); status != 200 {
		t.Fatalf("PUT secret: %d %s", status, b)
	}
	c.upload(t, "_", "secret_reactor", "env_c", map[string]string{"config": `{"secrets":["REACTOR_KEY"]}`, "wait_for_workers": "true"})
	want := `"value":"` + reactorValue + `"`
	if status, out := c.invoke(t, "_", "secret_reactor", `{"args":{"name":"REACTOR_KEY"}}`); status != 200 || !strings.Contains(out, want) {
		t.Fatalf("the reactor through the controller: %d %s", status, out)
	}
	waitFor(t, "the reactor at the edge with its secret", func() bool {
		status, out := localInvoke(t, localURL, localToken, "secret_reactor", `{"args":{"name":"REACTOR_KEY"}}`)
		return status == 200 && strings.Contains(out, want)
	})
}
