package timers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/internal/cron"
)

// Labels of wisp_agent_timer_runs_total (result) and
// wisp_agent_timer_skips_total (reason).
const (
	runOK       = "ok"      // ran and recorded
	runError    = "error"   // the function failed; recorded as such
	runNotRun   = "not_run" // nothing ran or nothing was recorded (no code, overloaded, stopping, outbox failure)
	skipOverlap = "overlap" // the previous run still ran
	skipMissed  = "missed"  // the tick was more than the grace late (downtime, sleep, clock jump)
)

type metrics struct {
	runs   *prometheus.CounterVec
	skips  *prometheus.CounterVec
	timers prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_agent_timer_runs_total",
			Help: "Edge-local timer ticks, by result: ok, error (the function failed; recorded), not_run (nothing recorded).",
		}, []string{"result"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_agent_timer_skips_total",
			Help: "Edge-local timer ticks skipped, by reason: overlap (the previous run still ran), missed (late after downtime or a clock jump).",
		}, []string{"reason"}),
		timers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_agent_timers",
			Help: "Edge-local timers the agent runs.",
		}),
	}
	for _, r := range []string{runOK, runError, runNotRun} {
		m.runs.WithLabelValues(r)
	}
	for _, r := range []string{skipOverlap, skipMissed} {
		m.skips.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.skips, m.timers)
	}
	return m
}

func (m *metrics) observe(_, outcome string) {
	switch outcome {
	case cron.Overlap:
		m.skips.WithLabelValues(skipOverlap).Inc()
	case cron.Missed:
		m.skips.WithLabelValues(skipMissed).Inc()
	}
}
