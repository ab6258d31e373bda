package server

import (
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// BenchmarkPropagation: the time from a function change committed through
// controller A's REST API (when a listener of its own on the database got
// the change's notification) to an agent connected only to controller B
// holding the new desired set, beside the same change made through B
// itself, alternately in one run (the same-run baseline). Each iteration
// updates the function twice, once through each controller, flipping its
// code between two fixtures.
//
//	go test -run '^$' -bench Propagation -benchtime 50x ./controller/server/
func BenchmarkPropagation(b *testing.B) {
	a, bc, dsn := clusterOfTwo(b)
	commits := watchCommits(b, dsn)
	agent := startTestAgent(b, bc.quic, a.joinToken(b), "edge")
	codes := []string{"hello_c", "echo_rust"}
	digests := []string{digestOf(b, codes[0]), digestOf(b, codes[1])}
	a.putFunction(b, "f", codes[0], false)
	agent.waitSet(b, 30*time.Second, "f@"+digests[0])
	var viaA, viaB []time.Duration
	flip := 0
	change := func(through *testController) time.Duration {
		flip = 1 - flip
		start := time.Now()
		through.putFunction(b, "f", codes[flip], true)
		held := agent.waitSet(b, 30*time.Second, "f@"+digests[flip])
		return held.Sub(commits.first(b, start, store.Change{Kind: store.ChangeFunctions, Key: "_/f"}))
	}
	b.ResetTimer()
	for range b.N {
		viaA = append(viaA, change(a))
		viaB = append(viaB, change(bc))
	}
	b.StopTimer()
	p50 := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	pa, pb := p50(viaA), p50(viaB)
	b.ReportMetric(float64(pa.Microseconds())/1000, "other-p50-ms")
	b.ReportMetric(float64(pb.Microseconds())/1000, "same-p50-ms")
	b.ReportMetric(float64(pa)/float64(pb), "other/same")
	b.ReportMetric(float64(slices.Max(viaA).Microseconds())/1000, "other-max-ms")
}
