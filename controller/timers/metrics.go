package timers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/internal/cron"
)

// Labels of wisp_timer_runs_total (result) and wisp_timer_skips_total
// (reason).
const (
	runOK       = "ok"      // the function ran and answered
	runError    = "error"   // it failed, or could not be dispatched (no agent, say); recorded as such when it ran
	skipOverlap = "overlap" // the previous run still ran
	skipMissed  = "missed"  // the tick was more than the grace late (downtime, clock jump)
	skipClaimed = "claimed" // another controller runs it (Claimer)
)

type metrics struct {
	runs   *prometheus.CounterVec
	skips  *prometheus.CounterVec
	timers prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_timer_runs_total",
			Help: "Cloud timer runs, by result: ok, or error (the function failed or could not be dispatched).",
		}, []string{"result"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wisp_timer_skips_total",
			Help: "Cloud timer ticks not run, by reason: overlap (the previous run still ran), missed (late after downtime or a clock jump), claimed (another controller's).",
		}, []string{"reason"}),
		timers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wisp_timers",
			Help: "Cloud timers the controller runs.",
		}),
	}
	for _, r := range []string{runOK, runError} {
		m.runs.WithLabelValues(r)
	}
	for _, r := range []string{skipOverlap, skipMissed, skipClaimed} {
		m.skips.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.skips, m.timers)
	}
	return m
}

// observe counts a Set's skips (runs are counted when they end).
func (m *metrics) observe(_, outcome string) {
	switch outcome {
	case cron.Overlap:
		m.skips.WithLabelValues(skipOverlap).Inc()
	case cron.Missed:
		m.skips.WithLabelValues(skipMissed).Inc()
	}
}
