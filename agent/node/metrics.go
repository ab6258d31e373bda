package node

import (
	"cmp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/status"
)

// outboxCollector exports the outbox: the backlog a partition builds up
// and how it drains, and what its fsyncs cost.
type outboxCollector struct{ st *state.State }

var (
	descOutboxEntries  = prometheus.NewDesc("wisp_agent_outbox_entries", "Locally run activations waiting for the controller to record them.", nil, nil)
	descOutboxAppended = prometheus.NewDesc("wisp_agent_outbox_appends_total", "Activations appended to the outbox.", nil, nil)
	descOutboxFailed   = prometheus.NewDesc("wisp_agent_outbox_append_failures_total", "Activations the outbox could not record (the caller got an error).", nil, nil)
	descOutboxAcked    = prometheus.NewDesc("wisp_agent_outbox_acked_total", "Outbox entries the controller acknowledged.", nil, nil)
	descOutboxFsyncs   = prometheus.NewDesc("wisp_agent_outbox_fsyncs_total", "Outbox journal fsyncs (one per group of appends).", nil, nil)
	descOutboxFsyncSec = prometheus.NewDesc("wisp_agent_outbox_fsync_seconds_total", "Time spent in outbox journal fsyncs.", nil, nil)
)

func (outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOutboxEntries, descOutboxAppended, descOutboxFailed, descOutboxAcked, descOutboxFsyncs, descOutboxFsyncSec} {
		ch <- d
	}
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.st.OutboxStats()
	ch <- prometheus.MustNewConstMetric(descOutboxEntries, prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(descOutboxAppended, prometheus.CounterValue, float64(s.Appended))
	ch <- prometheus.MustNewConstMetric(descOutboxFailed, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(descOutboxAcked, prometheus.CounterValue, float64(s.Acked))
	ch <- prometheus.MustNewConstMetric(descOutboxFsyncs, prometheus.CounterValue, float64(s.Fsyncs))
	ch <- prometheus.MustNewConstMetric(descOutboxFsyncSec, prometheus.CounterValue, s.FsyncSecs)
}

// quarantineCollector exports how much code the agent refuses to run.
type quarantineCollector struct{ st *state.State }

var descQuarantined = prometheus.NewDesc("wisp_agent_quarantined_digests", "Digests this agent refuses to run: code that was running when an agent died, until an operator releases it.", nil, nil)

func (quarantineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descQuarantined }

func (c quarantineCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(len(c.st.Quarantine())))
}

// linkCollector exports each controller link's state: the series the
// "agent disconnected" alert reads on the agent's side (the controller's
// wisp_controller_agents_connected counts the other side). Links come and
// go with DNS (link.Pool), so they are listed at each scrape.
type linkCollector struct {
	links func() []status.Link
}

var descLinkConnected = prometheus.NewDesc("wisp_agent_link_connected",
	"1 while the agent's link to a controller (the address it dials) is up, 0 while it is not.", []string{"controller"}, nil)

func (linkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descLinkConnected }

func (c linkCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for _, l := range c.links() {
		addr := cmp.Or(l.Address, l.Controller)
		if seen[addr] { // a name that resolves to nothing shows once
			continue
		}
		seen[addr] = true
		v := 0.0
		if l.Connected {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descLinkConnected, prometheus.GaugeValue, v, addr)
	}
}
