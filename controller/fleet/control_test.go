package fleet

import (
	"slices"
	"testing"

	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

func TestEffectiveLabels(t *testing.T) {
	for _, tc := range []struct {
		name          string
		own, operator []string
		want          []string
	}{
		{"none", nil, nil, []string{}},
		{"own only", []string{"zone=a", "gpu"}, nil, []string{"zone=a", "gpu"}},
		{"operator overrides by key", []string{"zone=a", "arch=arm64"}, []string{"zone=b"}, []string{"arch=arm64", "zone=b"}},
		{"operator adds", []string{"zone=a"}, []string{"tag=gpu"}, []string{"zone=a", "tag=gpu"}},
		{"a key without value", []string{"gpu", "tag=x"}, []string{"gpu=no", "tag="}, []string{"gpu=no", "tag="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := effectiveLabels(tc.own, tc.operator); !slices.Equal(got, tc.want) {
				t.Fatalf("effectiveLabels(%q, %q) = %q, want %q", tc.own, tc.operator, got, tc.want)
			}
		})
	}
}

// TestSchedulerMemory: the scheduler never believes more than the memory
// reported at join or the operator's cap, whichever is lower, nor more
// available than total.
func TestSchedulerMemory(t *testing.T) {
	const GiB = 1 << 30
	for _, tc := range []struct {
		name                 string
		hello, beat          uint64 // reported total, then available
		join, cap            uint64
		wantTotal, wantAvail uint64
	}{
		{"honest, no bounds", 8 * GiB, 2 * GiB, 0, 0, 8 * GiB, 2 * GiB},
		{"available above total", 8 * GiB, 1 << 50, 0, 0, 8 * GiB, 8 * GiB},
		{"total above what it joined with", 1 << 50, 1 << 50, 4 * GiB, 0, 4 * GiB, 4 * GiB},
		{"operator cap", 8 * GiB, 6 * GiB, 8 * GiB, 1 * GiB, 1 * GiB, 1 * GiB},
		{"cap above join memory", 1 << 50, 1 << 50, 2 * GiB, 16 * GiB, 2 * GiB, 2 * GiB},
		{"no metrics", 0, 0, 0, GiB, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{hello: protocol.Hello{MemTotalBytes: tc.hello}}
			s.memAvail.Store(tc.beat)
			s.apply(store.Agent{JoinMemBytes: tc.join, Control: store.AgentControl{MemCapBytes: tc.cap}})
			if total, avail := s.schedulerMemory(); total != tc.wantTotal || avail != tc.wantAvail {
				t.Fatalf("schedulerMemory = %d, %d; want %d, %d", total, avail, tc.wantTotal, tc.wantAvail)
			}
		})
	}
}

// TestControlFromAnotherController: what another controller on the same
// database sets (here written to the store directly) reaches this one's
// sessions at its next refresh: a cordon takes the agent out of
// scheduling, and a removal closes its session, after which its
// credential is refused.
func TestControlFromAnotherController(t *testing.T) {
	c := startController(t)
	// edge joins, then runs without its token: once refused, it cannot
	// join again.
	dir := t.TempDir()
	first := startAgent(t, c.addr, c.token, "edge", dir)
	// The controller counts the session before the agent has stored the
	// identity it was given: wait for that too.
	waitFor(t, "edge joined", func() bool {
		id, err := first.state.Identity()
		return c.fleet.Connected() == 1 && err == nil && id.AgentID != ""
	})
	first.stop()
	waitFor(t, "edge stopped", func() bool { return c.fleet.Connected() == 0 })
	startAgent(t, c.addr, "", "edge", dir)
	a := startAgent(t, c.addr, c.token, "other", t.TempDir())
	defer a.stop()
	waitFor(t, "two agents", func() bool { return c.fleet.Connected() == 2 })
	var edge string
	for _, info := range c.agents(t) {
		if info.Name == "edge" {
			edge = info.ID
		}
	}
	hello := createFunction(t, c.store, "hello", "hello_c", "")
	ctx := t.Context()

	if _, err := c.store.SetAgentControl(ctx, edge, store.AgentControl{Cordoned: true, Labels: []string{"zone=b"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.fleet.refreshAgents(ctx); err != nil {
		t.Fatal(err)
	}
	for _, info := range c.agents(t) {
		if info.ID == edge && (!info.Cordoned || !slices.Equal(info.Labels, []string{"zone=b"})) {
			t.Fatalf("after a refresh: %+v", info)
		}
	}
	for range 5 {
		if _, err := invokeFn(t, c, hello, `{}`, invoke.Scheduling{}); err != nil {
			t.Fatal(err)
		}
	}
	buf := &candidateBuf{}
	c.fleet.candidates(hello.Digest, nil, buf)
	for _, s := range buf.ss {
		if s.ID == edge {
			t.Fatal("the cordoned agent is a scheduling candidate")
		}
	}
	if s, _, err := c.fleet.pickDefault(scheduler.Function{Digest: hello.Digest}, nil); err != nil || s.ID == edge {
		t.Fatalf("the default policy picked %v (%v), want the agent not cordoned", s, err)
	}

	if err := c.store.DeleteAgent(ctx, edge); err != nil {
		t.Fatal(err)
	}
	if err := c.fleet.refreshAgents(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed agent's session closed", func() bool { return c.fleet.Connected() == 1 })
	for _, info := range c.agents(t) {
		if info.ID == edge {
			t.Fatalf("the fleet still lists the removed agent: %+v", info)
		}
	}
}
