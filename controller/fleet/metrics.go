package fleet

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's fleet and invocation metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	agents      prometheus.Gauge
	refusals    prometheus.Counter
	invocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	codeBytes   prometheus.Counter
	desired     prometheus.Counter
	deltas      prometheus.Counter
	retries     prometheus.Counter
	schedule    prometheus.Histogram
	quarantined *prometheus.GaugeVec
	// byFunction and fnDuration are the per-function series the dashboard
	// and the error-ratio alert read: one counter per result and one
	// histogram per function that was invoked since the start.
	byFunction *prometheus.CounterVec
	fnDuration *prometheus.HistogramVec
}

// NewMetrics registers the fleet's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := prometheus.ExponentialBuckets(10e-6, 4, 10)
	m := &Metrics{
		agents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_controller_agents_connected", Help: "Agents connected to this controller.",
		}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wisp_controller_agent_refusals_total", Help: "Agent connections refused (bad join token or credential, bad version).",
		}),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_controller_invocations_total", Help: "Invocations dispatched to agents, by result.",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wisp_controller_invocation_phase_seconds", Buckets: buckets,
			Help: "Invocation time by phase as reported by agents (queue, transfer, compile, instantiate, run) and end to end (total).",
		}, []string{"phase"}),
		codeBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wisp_controller_code_sent_bytes_total", Help: "Wasm bytes sent to agents (pushes and pulls).",
		}),
		desired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wisp_controller_desired_sets_sent_total", Help: "Full desired sets sent to agents: at each connection, and when a delta cannot carry a change (a resync that changes nothing for an agent sends none).",
		}),
		deltas: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wisp_controller_desired_deltas_sent_total", Help: "Desired-set deltas sent to agents: the functions of a set that changed, in place of the full set.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wisp_controller_invocation_retries_total", Help: "Invocations run on another agent because they provably never started (or, idempotent ones, did not start in time).",
		}),
		quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wisp_controller_quarantined_digests", Help: "Code no agent may run, by state: quarantined (an agent died running it) or held (an agent was lost running it, for a while).",
		}, []string{"state"}),
		schedule: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wisp_controller_schedule_seconds", Help: "Time to pick an agent.", Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
		byFunction: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_controller_function_invocations_total",
			Help: "Invocations dispatched to agents, by module, function and result (ok or the error: guest_error, no_worker, lost, timeout...).",
		}, []string{"module", "function", "result"}),
		fnDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wisp_controller_function_duration_seconds",
			Help:    "Time from dispatch to the agent's answer (scheduling, QUIC round trip and the agent's phases), by module and function.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 4, 9), // 100µs .. 6.6s
		}, []string{"module", "function"}),
	}
	reg.MustRegister(m.agents, m.refusals, m.invocations, m.duration, m.codeBytes, m.desired, m.deltas, m.retries, m.schedule, m.quarantined, m.byFunction, m.fnDuration)
	m.quarantined.WithLabelValues("quarantined")
	m.quarantined.WithLabelValues("held")
	return m
}

func (m *Metrics) quarantine(quarantined, held int) {
	if m != nil {
		m.quarantined.WithLabelValues("quarantined").Set(float64(quarantined))
		m.quarantined.WithLabelValues("held").Set(float64(held))
	}
}

func (m *Metrics) connected(n int) {
	if m != nil {
		m.agents.Set(float64(n))
	}
}

func (m *Metrics) refused() {
	if m != nil {
		m.refusals.Inc()
	}
}

func (m *Metrics) codeSent(n int) {
	if m != nil {
		m.codeBytes.Add(float64(n))
	}
}

func (m *Metrics) desiredSent() {
	if m != nil {
		m.desired.Inc()
	}
}

func (m *Metrics) deltaSent() {
	if m != nil {
		m.deltas.Inc()
	}
}

func (m *Metrics) retried() {
	if m != nil {
		m.retries.Inc()
	}
}

func (m *Metrics) scheduled(d time.Duration) {
	if m != nil {
		m.schedule.Observe(d.Seconds())
	}
}

func (m *Metrics) invoked(module, function, result string, total time.Duration, queueUS, transferUS, compileUS, instUS, runUS uint64) {
	if m == nil {
		return
	}
	m.invocations.WithLabelValues(result).Inc()
	m.byFunction.WithLabelValues(module, function, result).Inc()
	m.fnDuration.WithLabelValues(module, function).Observe(total.Seconds())
	m.duration.WithLabelValues("total").Observe(total.Seconds())
	for _, p := range [...]struct {
		name string
		us   uint64
	}{{"queue", queueUS}, {"transfer", transferUS}, {"compile", compileUS}, {"instantiate", instUS}, {"run", runUS}} {
		if p.us > 0 || p.name == "run" {
			m.duration.WithLabelValues(p.name).Observe(float64(p.us) / 1e6)
		}
	}
}
