package events

import "github.com/prometheus/client_golang/prometheus"

// Results counted by wisp_events_messages_total.
const (
	resultInvoked = "invoked"  // Invoke returned nil (one count per bound function)
	resultNotJSON = "not_json" // the payload was not JSON; nothing invoked
	resultError   = "error"    // Invoke returned an error
	resultRepeat  = "repeat"   // sent again after a lost acknowledgement, already handed: not invoked again
)

type metrics struct {
	messages  *prometheus.CounterVec
	connected *prometheus.GaugeVec
}

// newMetrics makes the Manager's metrics and registers them on reg when it
// is not nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_events_messages_total",
			Help: "MQTT event messages handled by the controller, by result: invoked, not_json, error (Invoke failed) or repeat (sent again by the broker after a lost acknowledgement; not invoked again).",
		}, []string{"result"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wisp_events_connected",
			Help: "1 while the controller is connected to an events broker (host:port), 0 while it is not.",
		}, []string{"broker"}),
	}
	for _, r := range []string{resultInvoked, resultNotJSON, resultError, resultRepeat} {
		m.messages.WithLabelValues(r) // export zeros, so rates work from the start
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.connected)
	}
	return m
}
