package fleet

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/protocol"
)

func TestAddDigest(t *testing.T) {
	a := protocol.SetDigest{31: 0xff, 30: 0xff}
	b := protocol.SetDigest{31: 0x01}
	if got := addDigest(a, b, false); got != (protocol.SetDigest{29: 1}) {
		t.Fatalf("carry: %x", got)
	}
	max := protocol.SetDigest{}
	for i := range max {
		max[i] = 0xff
	}
	if got := addDigest(max, b, false); got != (protocol.SetDigest{}) {
		t.Fatalf("wrap: %x", got)
	}
	if got := addDigest(addDigest(setDigestBase, a, false), a, true); got != setDigestBase {
		t.Fatalf("add then take out: %x", got)
	}
}

// TestDesiredDeltasFollowChanges: after the full set at connection, each
// change reaches the agent as a delta naming only what changed, and a
// sync that changes nothing sends nothing. An agent whose set is not the
// delta's base (another controller's set, a lost delta) asks, and gets
// the full set; an agent that was down gets the full set at its
// reconnection.
func TestDesiredDeltasFollowChanges(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	c := startControllerWith(t, func(cfg *Config) { cfg.Metrics = m })
	ctx := t.Context()
	dir := t.TempDir()
	a := startAgent(t, c.addr, c.token, "edge", dir)
	waitFor(t, "the agent", func() bool { return c.fleet.Connected() == 1 })
	sets := func() float64 { return testutil.ToFloat64(m.desired) }
	deltas := func() float64 { return testutil.ToFloat64(m.deltas) }
	waitFor(t, "the full set at connection", func() bool { return sets() == 1 })
	names := func(a *testAgent) []string {
		fs, _ := a.state.Desired()
		var out []string
		for _, f := range fs {
			out = append(out, f.Name+"="+f.Digest[:min(12, len(f.Digest))]+","+strings.Join(f.Env, ";"))
		}
		return out
	}
	want := func(what string, a *testAgent, nSets, nDeltas float64, fns ...string) {
		t.Helper()
		waitFor(t, what, func() bool { return slices.Equal(names(a), fns) && sets() == nSets && deltas() == nDeltas })
	}
	f1 := createFunction(t, c.store, "f1", "hello_c", "")
	createFunction(t, c.store, "f2", "hello_c", "")
	c.fleet.SyncDesired(ctx)
	short := f1.Digest[:12]
	want("a delta with two functions", a, 1, 1, "f1="+short+",", "f2="+short+",")

	f1.Spec.Config = fnspec.Config{Env: map[string]string{"A": "1"}}
	code, _ := c.store.Code(ctx, f1.Digest)
	if _, err := c.store.UpdateFunction(ctx, f1, code); err != nil {
		t.Fatal(err)
	}
	c.fleet.SyncDesired(ctx)
	want("a delta with the update", a, 1, 2, "f1="+short+",A=1", "f2="+short+",")
	if _, err := c.store.DeleteFunction(ctx, "_", "f2"); err != nil {
		t.Fatal(err)
	}
	c.fleet.SyncDesired(ctx)
	want("a delta with the removal", a, 1, 3, "f1="+short+",A=1")
	c.fleet.SyncDesired(ctx) // nothing changed
	c.fleet.SyncDesired(ctx)

	// Another set behind the link's back (as another controller's would
	// be): the next delta does not apply, the agent asks, the full set
	// heals it.
	if err := a.state.SetDesiredSet(&protocol.DesiredSet{Functions: []protocol.DesiredFunction{{Module: "_", Name: "bogus"}}, Digest: protocol.SetDigest{9}}); err != nil {
		t.Fatal(err)
	}
	createFunction(t, c.store, "f3", "hello_c", "")
	c.fleet.SyncDesired(ctx)
	want("the full set the agent asked for", a, 2, 4, "f1="+short+",A=1", "f3="+short+",")

	// Down while a change is made: the full set at its reconnection.
	a.stop()
	waitFor(t, "the agent gone", func() bool { return c.fleet.Connected() == 0 })
	createFunction(t, c.store, "f4", "hello_c", "")
	c.fleet.SyncDesired(ctx)
	a = startAgent(t, c.addr, c.token, "edge", dir)
	want("the full set at the reconnection", a, 3, 4, "f1="+short+",A=1", "f3="+short+",", "f4="+short+",")
}
