package executor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
)

// Metrics are the agent's invocation metrics. A nil *Metrics records nothing.
type Metrics struct {
	invocations *prometheus.CounterVec
	phases      *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	loads       *prometheus.CounterVec
	code        *prometheus.CounterVec
}

// NewMetrics registers the executor's metrics and the runtime's counters on reg.
func NewMetrics(reg prometheus.Registerer, rt *runtime.Runtime) *Metrics {
	m := &Metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_agent_invocations_total",
			Help: "Invocations run by this agent, by result (ok or the error kind).",
		}, []string{"result"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wisp_agent_invocation_phase_seconds",
			Help:    "Time spent per invocation phase: queue, transfer (code fetch), compile, instantiate, run.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}, []string{"phase"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_agent_invocations_in_flight",
			Help: "Invocations running now.",
		}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_agent_module_loads_total",
			Help: "Modules compiled by this agent, by source: disk (compilation cache hit) or cold.",
		}, []string{"source"}),
		code: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_agent_code_received_total",
			Help: "Wasm modules this agent received from the controller, by how: push (sent ahead of invocations) or fetch (asked for by an invocation, NeedCode).",
		}, []string{"how"}),
	}
	for _, how := range []string{"push", "fetch"} {
		m.code.WithLabelValues(how)
	}
	reg.MustRegister(m.invocations, m.phases, m.inFlight, m.loads, m.code)
	if rt != nil {
		reg.MustRegister(runtimeCollector{rt})
	}
	return m
}

func (m *Metrics) inflight(d float64) {
	if m != nil {
		m.inFlight.Add(d)
	}
}

// codeReceived counts one module received by how ("push" or "fetch").
func (m *Metrics) codeReceived(how string) {
	if m != nil {
		m.code.WithLabelValues(how).Inc()
	}
}

func (m *Metrics) observeLoad(info runtime.Info) {
	if m == nil || !info.Compiled {
		return
	}
	src := "cold"
	if info.DiskCacheHit {
		src = "disk"
	}
	m.loads.WithLabelValues(src).Inc()
}

func (m *Metrics) observe(_ Call, o *Outcome) {
	if m == nil {
		return
	}
	result := "ok"
	if o.Err != nil {
		var rerr *runtime.Error
		switch {
		case errors.As(o.Err, &rerr):
			result = rerr.Kind.String()
		case errors.Is(o.Err, state.ErrQuarantined):
			result = "quarantined"
		default:
			result = "infrastructure"
		}
	}
	m.invocations.WithLabelValues(result).Inc()
	phases := [...]struct {
		name string
		d    float64
	}{
		{"queue", o.Queue.Seconds()}, {"transfer", o.Transfer.Seconds()}, {"compile", o.Compile.Seconds()},
		{"instantiate", o.Instantiate.Seconds()}, {"run", o.Run.Seconds()},
	}
	for _, p := range phases {
		if p.d > 0 || p.name == "run" {
			m.phases.WithLabelValues(p.name).Observe(p.d)
		}
	}
}

// runtimeCollector exports the runtime's own counters.
type runtimeCollector struct{ rt *runtime.Runtime }

var (
	descCompiles  = prometheus.NewDesc("wisp_agent_runtime_compiles_total", "Modules compiled (including disk cache loads).", nil, nil)
	descDiskHits  = prometheus.NewDesc("wisp_agent_runtime_disk_cache_hits_total", "Compiles served by the on-disk compilation cache.", nil, nil)
	descMemHits   = prometheus.NewDesc("wisp_agent_runtime_memory_cache_hits_total", "Loads of a digest already compiled in memory.", nil, nil)
	descSpareHits = prometheus.NewDesc("wisp_agent_runtime_spare_hits_total", "Invocations served by a pre-instantiated spare instance.", nil, nil)
	descModules   = prometheus.NewDesc("wisp_agent_runtime_modules", "Compiled modules in memory.", nil, nil)
	descEvictions = prometheus.NewDesc("wisp_agent_runtime_evictions_total", "Compiled modules evicted from memory.", nil, nil)
	descSlotsBusy = prometheus.NewDesc("wisp_agent_slots_busy", "Instance slots in use (at most the runtime's MaxConcurrent).", nil, nil)
	descQueued    = prometheus.NewDesc("wisp_agent_queued", "Invocations waiting for an instance slot now.", nil, nil)
	descWaits     = prometheus.NewDesc("wisp_agent_queue_waits_total",
		"Invocations that had to wait for an instance slot, by reason: function_limit (their function had --max-per-function instances) or agent_full (every slot busy).",
		[]string{"reason"}, nil)
	descRefusals = prometheus.NewDesc("wisp_agent_queue_refusals_total",
		"Invocations that never got an instance slot, by reason: queue_full (refused at once, overloaded), deadline (timed out while queued) or canceled (the caller gave up while queued).",
		[]string{"reason"}, nil)
)

func (runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCompiles, descDiskHits, descMemHits, descSpareHits, descModules, descEvictions,
		descSlotsBusy, descQueued, descWaits, descRefusals} {
		ch <- d
	}
}

func (c runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rt.Stats()
	ch <- prometheus.MustNewConstMetric(descCompiles, prometheus.CounterValue, float64(s.Compiles))
	ch <- prometheus.MustNewConstMetric(descDiskHits, prometheus.CounterValue, float64(s.DiskCacheHits))
	ch <- prometheus.MustNewConstMetric(descMemHits, prometheus.CounterValue, float64(s.MemoryCacheHits))
	ch <- prometheus.MustNewConstMetric(descSpareHits, prometheus.CounterValue, float64(s.SpareHits))
	ch <- prometheus.MustNewConstMetric(descModules, prometheus.GaugeValue, float64(s.Modules))
	ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(s.Evictions))
	ch <- prometheus.MustNewConstMetric(descSlotsBusy, prometheus.GaugeValue, float64(s.Busy))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(s.Waiting))
	ch <- prometheus.MustNewConstMetric(descWaits, prometheus.CounterValue, float64(s.WaitedFunctionLimit), "function_limit")
	ch <- prometheus.MustNewConstMetric(descWaits, prometheus.CounterValue, float64(s.WaitedAgentFull), "agent_full")
	ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(s.RefusedQueueFull), "queue_full")
	ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(s.QueueTimeouts), "deadline")
	ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(s.QueueCanceled), "canceled")
}
