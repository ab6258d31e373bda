package node

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeLink bool

func (f *fakeLink) Connected() bool { return bool(*f) }

// TestLinkCollector: one wisp_agent_link_connected series per controller
// address, following each link's state.
func TestLinkCollector(t *testing.T) {
	up, down := fakeLink(true), fakeLink(false)
	reg := prometheus.NewRegistry()
	reg.MustRegister(linkCollector{addrs: []string{"a:4433", "b:4433"}, links: []interface{ Connected() bool }{&up, &down}})
	want := `
# HELP wisp_agent_link_connected 1 while the agent's link to a controller (the address it dials) is up, 0 while it is not.
# TYPE wisp_agent_link_connected gauge
wisp_agent_link_connected{controller="a:4433"} 1
wisp_agent_link_connected{controller="b:4433"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wisp_agent_link_connected"); err != nil {
		t.Fatal(err)
	}
	up, down = false, true
	if got := testutil.ToFloat64(prometheus.Collector(linkCollector{addrs: []string{"b:4433"}, links: []interface{ Connected() bool }{&down}})); got != 1 {
		t.Fatalf("after the link came up: %v, want 1", got)
	}
}
