package node

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/agent/status"
)

// TestLinkCollector: one wisp_agent_link_connected series per address
// dialled (a host name's addresses each, an address given as is), listed
// at each scrape as links come and go.
func TestLinkCollector(t *testing.T) {
	links := []status.Link{
		{Controller: "a:4433", Connected: true},
		{Controller: "ctl.example:4433", Address: "10.0.0.1:4433"},
		{Controller: "ctl.example:4433", Address: "10.0.0.2:4433", Connected: true},
		{Controller: "gone.example:4433", LastError: "resolving: no such host"},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(linkCollector{links: func() []status.Link { return links }})
	want := `
# HELP wisp_agent_link_connected 1 while the agent's link to a controller (the address it dials) is up, 0 while it is not.
# TYPE wisp_agent_link_connected gauge
wisp_agent_link_connected{controller="10.0.0.1:4433"} 0
wisp_agent_link_connected{controller="10.0.0.2:4433"} 1
wisp_agent_link_connected{controller="a:4433"} 1
wisp_agent_link_connected{controller="gone.example:4433"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wisp_agent_link_connected"); err != nil {
		t.Fatal(err)
	}
	links = links[:1]
	links[0].Connected = false
	if got := testutil.ToFloat64(prometheus.Collector(linkCollector{links: func() []status.Link { return links }})); got != 0 {
		t.Fatalf("after the link went down: %v, want 0", got)
	}
}
