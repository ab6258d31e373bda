package e2e

import (
	"context"

	"github.com/wispfn/wisp/internal/simagent"
)

// simAgent is a minimal agent for scale tests (internal/simagent): it
// joins with a token, sends load reports as the welcome asks, and answers
// every Invoke with a canned result ({"sim":true}) without running
// anything. Each one made here has a UDP socket of its own; the scale
// benchmarks (scale_test.go) put thousands on one.
type simAgent = simagent.Agent

func dialSimAgent(ctx context.Context, addr, token, name string) (*simAgent, error) {
	return dialSimAgentMem(ctx, addr, token, name, 1<<30, 512<<20)
}

// dialSimAgentMem is dialSimAgent reporting total and available memory of
// its choosing (a liar reports what it likes), in its hello and load
// reports.
func dialSimAgentMem(ctx context.Context, addr, token, name string, total, avail uint64) (*simAgent, error) {
	return simagent.DialOne(ctx, addr, token, name, simagent.Options{MemTotal: total, MemAvail: avail})
}
