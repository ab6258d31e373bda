package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/status"
)

// TestPrintStatusLinks: each link is shown with the controller as given,
// the address dialled when a name resolved to it, the controller's id,
// the link that sends the outbox, and why a link is down on purpose.
func TestPrintStatusLinks(t *testing.T) {
	now := time.Now()
	rep := status.Report{From: status.FromAPI, AgentID: "ag_1", DataDir: "/d", Links: []status.Link{
		{Controller: "ctl.example:4433", Address: "10.0.0.1:4433", ControllerID: "ctl-a", Connected: true, Since: now, DrainsOutbox: true},
		{Controller: "ctl.example:4433", Address: "10.0.0.2:4433", Since: now, Note: "standby: controller ctl-a is reached through 10.0.0.1:4433"},
		{Controller: "gone.example:4433", LastError: "resolving: no such host"},
	}}
	var b strings.Builder
	printStatus(&b, rep, now)
	out := b.String()
	for _, want := range []string{
		"controllers (3):",
		"ctl.example:4433 (10.0.0.1:4433) connected",
		"controller ctl-a  sends the outbox",
		"ctl.example:4433 (10.0.0.2:4433) disconnected",
		"standby: controller ctl-a is reached through 10.0.0.1:4433",
		"gone.example:4433",
		"last error: resolving: no such host",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
