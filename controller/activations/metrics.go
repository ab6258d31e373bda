package activations

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the activation records' metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	truncatedTotal *prometheus.CounterVec // field
	prunedTotal    *prometheus.CounterVec // reason
	pruneFailures  prometheus.Counter
	stored         prometheus.Gauge
	storedBytes    prometheus.Gauge
}

// Values of the "field" label of wisp_controller_activations_truncated_total.
const (
	fieldOutput  = "output"
	fieldMessage = "message"
	fieldLogs    = "logs"
)

// Values of the "reason" label of wisp_controller_activations_pruned_total:
// the bound of Retention that removed the record.
const (
	reasonAge           = "age"
	reasonFunctionCount = "function_count"
	reasonCount         = "count"
)

// NewMetrics registers the activation metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		truncatedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_controller_activations_truncated_total",
			Help: "Activation records whose output, error message or log was cut to its bound before it was stored, by field.",
		}, []string{"field"}),
		prunedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_controller_activations_pruned_total",
			Help: "Activation records removed by retention, by the bound that removed them: age, function_count (beyond the newest of their function), count (beyond the newest in all).",
		}, []string{"reason"}),
		pruneFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wisp_controller_activation_prune_failures_total",
			Help: "Retention passes that failed (the store answered an error); the next pass tries again.",
		}),
		stored: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_controller_activations_stored",
			Help: "Activation records in the store, as counted after the last retention pass.",
		}),
		storedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_controller_activations_stored_bytes",
			Help: "Bytes the activation records and the sink delivery queue take in the store (Postgres relation sizes, or bbolt pages), after the last retention pass. Freed room is reused, not given back to the file system.",
		}),
	}
	for _, f := range []string{fieldOutput, fieldMessage, fieldLogs} {
		m.truncatedTotal.WithLabelValues(f) // export zeros, so rates work from the start
	}
	for _, r := range []string{reasonAge, reasonFunctionCount, reasonCount} {
		m.prunedTotal.WithLabelValues(r)
	}
	reg.MustRegister(m.truncatedTotal, m.prunedTotal, m.pruneFailures, m.stored, m.storedBytes)
	return m
}

func (m *Metrics) truncated(field string) {
	if m != nil {
		m.truncatedTotal.WithLabelValues(field).Inc()
	}
}

func (m *Metrics) pruned(reason string, n int) {
	if m != nil && n > 0 {
		m.prunedTotal.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) pruneFailed() {
	if m != nil {
		m.pruneFailures.Inc()
	}
}

func (m *Metrics) volume(count, bytes int64) {
	if m != nil {
		m.stored.Set(float64(count))
		m.storedBytes.Set(float64(bytes))
	}
}
