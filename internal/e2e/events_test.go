package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testenv"
)

// TestCloudEventsSurviveControllerRestart: a function with a FunLess MQTT
// event (run by the controller) is invoked by messages, and still is after
// the controller restarted: its subscriptions are restored from the store.
func TestCloudEventsSurviveControllerRestart(t *testing.T) {
	testenv.TCP(t, "Mosquitto", "127.0.0.1:1883", "run make services")
	ctlDir := t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir())
	suffix := make([]byte, 4)
	rand.Read(suffix)
	topic := "wisp/cloud/" + hex.EncodeToString(suffix)
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
	c.stop()
	c = startController(t, ctlDir, "", quicAddr)
	publishUntil("after", c)
}
