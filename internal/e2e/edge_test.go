package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wispfn/wisp/internal/testing/testenv"
)

// TestEdgeAutonomy: with the controller down, an agent keeps serving its
// local invoke API and its edge-local MQTT trigger; it is killed -9 and
// restarted in the middle; when the controller is back, every activation
// reaches it exactly once.
func TestEdgeAutonomy(t *testing.T) {
	testenv.Mosquitto(t)
	ctlDir, edgeDir := t.TempDir(), t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	token := c.joinToken(t, "")
	edge := startEdgeAgent(t, c.quic, token, edgeDir)
	localURL := edge.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(edgeDir, "local.token"))

	topic := "wisp/e2e/" + testenv.Unique()
	events := fmt.Sprintf(`[{"type":"mqtt","params":{"topic":%q,"local":true}}]`, topic)
	c.upload(t, "_", "hello", "hello_c", map[string]string{"events": events, "wait_for_workers": "true"})
	waitFor(t, "the function in the agent's desired set", func() bool {
		status, _ := localInvoke(t, localURL, localToken, "hello", `{"args":{"name":"warm"}}`)
		return status == 200
	})
	edge.Await(`triggers: connected to the MQTT broker`)
	edge.Await(`msg="local triggers synced" bindings=1`)

	// Partition: the controller goes away.
	quicAddr := c.quic
	c.Stop()

	const calls, messages = 40, 40
	pub := mqttClient(t)
	for i := range calls {
		if status, body := localInvoke(t, localURL, localToken, "hello", fmt.Sprintf(`{"args":{"name":"L%d"}}`, i)); status != 200 {
			t.Fatalf("local call %d with the controller down: %d %s", i, status, body)
		}
		if i == calls/2 {
			// Crash in the middle, and come back without the controller.
			edge.Kill()
			edge = startEdgeAgentOffline(t, quicAddr, edgeDir)
			localURL = edge.Await(`msg="local invoke API" addr=(\S+)`)
		}
	}
	for i := range messages {
		tok := pub.Publish(topic, 1, false, fmt.Sprintf(`{"name":"M%d"}`, i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	// The trigger fires with the controller down. The agent's outbox, as its
	// metrics show, holds every call (those from before the kill too: the
	// journal replayed them) and every message.
	metricsAddr := edge.Await(`msg=metrics addr=(\S+)`)
	waitFor(t, "the outbox to hold every activation", func() bool {
		n, _ := strconv.Atoi(metric(t, metricsAddr, "wisp_agent_outbox_entries"))
		return n >= calls+messages
	})
	if got := metric(t, metricsAddr, "wisp_agent_outbox_append_failures_total"); got != "0" {
		t.Fatalf("outbox append failures: %s", got)
	}

	// Heal: the controller comes back on the same address.
	c = startController(t, ctlDir, "", quicAddr)
	want := 1 + calls + messages // the warm-up call too
	var got []activation
	waitFor(t, fmt.Sprintf("%d activations recorded", want), func() bool {
		got = listActivations(t, c, "hello")
		return len(got) >= want
	})
	// The controller acknowledges outbox entries once it recorded them, and
	// only the outbox replays: once it is empty no duplicate can come.
	waitFor(t, "the agent's outbox to drain", func() bool {
		return metric(t, metricsAddr, "wisp_agent_outbox_entries") == "0"
	})
	got = listActivations(t, c, "hello")
	seen := map[string]bool{}
	bySource := map[string]int{}
	names := map[string]int{}
	for _, a := range got {
		if seen[a.ID] {
			t.Fatalf("activation %s recorded twice", a.ID)
		}
		seen[a.ID] = true
		bySource[a.Source]++
		var out struct{ Payload string }
		json.Unmarshal(a.Output, &out)
		names[out.Payload]++
	}
	if bySource["local-api"] != 1+calls || bySource["local-mqtt"] < messages {
		t.Fatalf("recorded by source %v, want %d local-api and %d local-mqtt", bySource, 1+calls, messages)
	}
	for i := range messages {
		if n := names[fmt.Sprintf("Hello M%d!", i)]; n < 1 {
			t.Errorf("message %d never ran", i)
		}
	}
	for i := range calls {
		if n := names[fmt.Sprintf("Hello L%d!", i)]; n != 1 {
			t.Errorf("local call %d recorded %d times", i, n)
		}
	}
	if n, _ := strconv.Atoi(metric(t, metricsAddr, "wisp_agent_outbox_acked_total")); n < calls+messages-calls/2 {
		t.Fatalf("the restarted agent counted %d acknowledged entries", n)
	}
}

func startEdgeAgent(t *testing.T, addr, token, dir string) *proc {
	t.Helper()
	p := startEnv(t, "wisp-agent edge", tokenEnv(token), "run", "--controllers", addr, "--data-dir", dir,
		"--agent-name", "edge", "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0")
	p.Await(`msg=connected`)
	return p
}

func startEdgeAgentOffline(t *testing.T, addr, dir string) *proc {
	t.Helper()
	return start(t, "wisp-agent edge (restarted)", "run", "--controllers", addr, "--data-dir", dir,
		"--agent-name", "edge", "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0")
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func localInvoke(t *testing.T, url, token, fn, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+url+"/v1/fn/_/"+fn, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mqttClient(t *testing.T) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID("wisp-e2e-pub-" + testenv.Unique())
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

type activation struct {
	ID     string          `json:"id"`
	Source string          `json:"source"`
	Output json.RawMessage `json:"output"`
}

func listActivations(t *testing.T, c *controller, fn string) []activation {
	t.Helper()
	var all []activation
	after := ""
	for {
		status, b := c.do(t, "GET", "/v1/activations?order=oldest&function="+fn+"&limit=1000&after="+after, nil, "")
		if status != 200 {
			t.Fatalf("list activations: %d %s", status, b)
		}
		var env struct{ Data []activation }
		json.Unmarshal(b, &env)
		all = append(all, env.Data...)
		if len(env.Data) < 1000 {
			return all
		}
		after = env.Data[len(env.Data)-1].ID
	}
}

// TestEdgeTriggersWithoutLocalAPI: an agent whose local invoke API is off
// (--local-api=) still runs its edge-local MQTT triggers, and their
// activations reach the controller.
func TestEdgeTriggersWithoutLocalAPI(t *testing.T) {
	testenv.Mosquitto(t)
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	edge := start(t, "wisp-agent edge", "run", "--controllers", c.quic, "--join-token", c.joinToken(t, ""),
		"--data-dir", t.TempDir(), "--agent-name", "edge", "--metrics-addr", "127.0.0.1:0", "--local-api=")
	edge.Await(`msg=connected`)
	topic := "wisp/e2e/nolocalapi/" + testenv.Unique()
	events := fmt.Sprintf(`[{"type":"mqtt","params":{"topic":%q,"local":true}}]`, topic)
	c.upload(t, "_", "hello", "hello_c", map[string]string{"events": events, "wait_for_workers": "true"})
	edge.Await(`triggers: connected to the MQTT broker`)
	edge.Await(`msg="local triggers synced" bindings=1`)

	pub := mqttClient(t)
	if tok := pub.Publish(topic, 1, false, `{"name":"NoAPI"}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	var got []activation
	waitFor(t, "the trigger's activation recorded by the controller", func() bool {
		got = listActivations(t, c, "hello")
		return len(got) >= 1
	})
	var out struct{ Payload string }
	json.Unmarshal(got[0].Output, &out)
	if len(got) != 1 || got[0].Source != "local-mqtt" || out.Payload != "Hello NoAPI!" {
		t.Fatalf("activations %+v, want the one from the trigger", got)
	}
	if strings.Contains(edge.Log(), "local invoke API") {
		t.Fatal("the agent served its local API although --local-api was empty")
	}
}
