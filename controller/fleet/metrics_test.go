package fleet

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFunctionMetrics: every invocation counts under its module, function
// and result, and its time lands in the function's histogram.
func TestFunctionMetrics(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.invoked("_", "hello", "ok", 2*time.Millisecond, 0, 0, 0, 10, 500)
	m.invoked("_", "hello", "ok", 3*time.Millisecond, 0, 0, 0, 10, 500)
	m.invoked("_", "hello", "guest_error", time.Millisecond, 0, 0, 0, 10, 500)
	m.invoked("mod", "other", "no_worker", time.Millisecond, 0, 0, 0, 0, 0)
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"_", "hello", "ok"}, 2},
		{[]string{"_", "hello", "guest_error"}, 1},
		{[]string{"mod", "other", "no_worker"}, 1},
		{[]string{"mod", "hello", "ok"}, 0},
	} {
		if got := testutil.ToFloat64(m.byFunction.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("wisp_controller_function_invocations_total%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.fnDuration, "wisp_controller_function_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2 (one per function)", n)
	}
	var nilMetrics *Metrics
	nilMetrics.invoked("_", "hello", "ok", time.Millisecond, 0, 0, 0, 0, 0) // records nothing, no panic
}
