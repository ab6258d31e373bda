package sinks

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus instruments.
type metrics struct {
	deliveries *prometheus.CounterVec // result: ok, conflict, error
	inFlight   prometheus.Gauge
}

// Values of the "result" label of wisp_sink_deliveries_total.
const (
	resultOK       = "ok"
	resultConflict = "conflict"
	resultError    = "error"
)

// newMetrics makes the instruments and registers them on reg when it is not
// nil; the pending gauge exists only for a queue that can count cheaply.
func newMetrics(reg prometheus.Registerer, q Queue) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_sink_deliveries_total",
			Help: "Attempts to store an activation's output in a sink, by result: ok (stored), conflict (already stored, counts as delivered), error (will be retried).",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_sink_in_flight",
			Help: "Sink deliveries being written now.",
		}),
	}
	for _, r := range []string{resultOK, resultConflict, resultError} {
		m.deliveries.WithLabelValues(r) // export zeros, so rates work from the start
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.deliveries, m.inFlight}
	if l, ok := q.(interface{ Len() int }); ok {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wisp_sink_pending",
			Help: "Sink deliveries not yet made, including those waiting to be retried.",
		}, func() float64 { return float64(l.Len()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
