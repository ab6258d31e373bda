package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// TestCloudEventsSurviveControllerRestart: a function with a FunLess MQTT
// event (run by the controller) is invoked by messages, and still is after
// the controller restarted: its subscriptions are restored from the store.
func TestCloudEventsSurviveControllerRestart(t *testing.T) {
	testenv.Mosquitto(t)
	ctlDir := t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir())
	topic := "wisp/cloud/" + testenv.Unique()
	c.upload(t, "_", "hello", "hello_c", map[string]string{
		"events": fmt.Sprintf(`[{"type":"mqtt","params":{"host":"127.0.0.1","port":"1883","topic":%q}}]`, topic),
	})
	pub := mqttClient(t)
	publishUntil := func(name string, c *controller) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			pub.Publish(topic, 1, false, fmt.Sprintf(`{"name":%q}`, name)).WaitTimeout(5 * time.Second)
			time.Sleep(200 * time.Millisecond)
			for _, a := range listActivations(t, c, "hello") {
				if a.Source == "mqtt" && string(a.Output) == fmt.Sprintf(`{"payload":"Hello %s!"}`, name) {
					return
				}
			}
		}
		t.Fatalf("no activation from an MQTT message %q", name)
	}
	publishUntil("before", c)

	quicAddr := c.quic
	c.Stop()
	c = startController(t, ctlDir, "", quicAddr)
	publishUntil("after", c)
}

// TestUnreachableEventAndSinkAnswer207: FunLess answers 207 when an event
// or a sink cannot be connected; the function is stored anyway.
func TestUnreachableEventAndSinkAnswer207(t *testing.T) {
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	body, ct := testhttp.Multipart(map[string]string{
		"name":   "partial",
		"events": `[{"type":"mqtt","params":{"host":"127.0.0.1","port":1,"topic":"t"}}]`,
		"sinks":  `[{"type":"couchdb","params":{"url":"http://127.0.0.1:1/db"}}]`,
	}, "code", "hello.wasm", mustRead(t, "../../testdata/wasm/hello_c.wasm"))
	status, out := c.do(t, "POST", "/v1/fn/_", body, ct)
	if status != 207 || !strings.Contains(string(out), `"events_metadata":{"successful":0,"failed":1,"total":1}`) ||
		!strings.Contains(string(out), `"sinks_metadata":{"successful":0,"failed":1,"total":1}`) {
		t.Fatalf("upload with unreachable event and sink: %d %s", status, out)
	}
	if status, out := c.do(t, "GET", "/v1/fn/_/partial", nil, ""); status != 200 {
		t.Fatalf("not stored: %d %s", status, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
