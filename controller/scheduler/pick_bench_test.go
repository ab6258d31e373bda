package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchCands is a fleet of n agents with varied memory and load, one in ten
// holding the code and one in fifty without a heartbeat yet.
func benchCands(n int) []Candidate {
	r := rand.New(rand.NewPCG(1, 2))
	cands := make([]Candidate, n)
	for i := range cands {
		total := uint64(1+r.IntN(64)) << 30
		cands[i] = Candidate{
			ID: fmt.Sprintf("agent-%04d", i), Name: fmt.Sprintf("edge-%04d", r.IntN(n)),
			MemTotal: total, MemAvail: r.Uint64N(total), MemKnown: i%50 != 0,
			InFlight: r.IntN(20), HasDigest: i%10 == 0,
		}
	}
	return cands
}

// BenchmarkPick: one decision over 1,000 agents. Run with
//
//	go test -run '^$' -bench BenchmarkPick -benchmem ./controller/scheduler/
func BenchmarkPick(b *testing.B) {
	cands := benchCands(1000)
	fn := Function{Digest: "d", Tag: "t", CapacityKiB: 128 * 1024}
	tagged := func(blk Block) *Script {
		blk.Invalidate = Invalidate{CapacityUsed: 90, MaxConcurrentInvocations: 15}
		return &Script{Tags: []Tag{{Name: "t", Blocks: []Block{blk}, Followup: FollowupFail}}}
	}
	named := func(s Strategy) Block {
		var ws []string
		for i := range 10 {
			ws = append(ws, fmt.Sprintf("edge-%04d", i*97))
		}
		return Block{Workers: ws, Strategy: s}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, bc := range []struct {
		name   string
		script *Script
	}{
		{"default", nil},
		{"app-star-best-first", tagged(all(StrategyBestFirst))},
		{"app-star-random", tagged(all(StrategyRandom))},
		{"app-star-platform", tagged(all(StrategyPlatform))},
		{"app-10-names-best-first", tagged(named(StrategyBestFirst))},
		{"app-10-names-platform", tagged(named(StrategyPlatform))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Pick(cands, fn, bc.script, r.IntN); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
