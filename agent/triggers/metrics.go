package triggers

import "github.com/prometheus/client_golang/prometheus"

// Results counted by wisp_agent_trigger_messages_total.
const (
	resultInvoked  = "invoked"  // Invoke returned nil (one count per bound function)
	resultError    = "error"    // Invoke failed; the message stays unacked and comes back
	resultNotJSON  = "not_json" // acknowledged, not invoked
	resultUnrouted = "unrouted" // no binding wants the topic any more; acknowledged
)

type metrics struct {
	messages  *prometheus.CounterVec
	latency   prometheus.Histogram
	connected prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_agent_trigger_messages_total",
			Help: "Edge-local MQTT trigger messages, by result: invoked, error, not_json, unrouted.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wisp_agent_trigger_latency_seconds",
			Help:    "Time from the broker's delivery of a trigger message to the start of its invocation.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_agent_trigger_connected",
			Help: "1 while the agent is connected to its MQTT broker.",
		}),
	}
	for _, r := range []string{resultInvoked, resultError, resultNotJSON, resultUnrouted} {
		m.messages.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.latency, m.connected)
	}
	return m
}
