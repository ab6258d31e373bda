package fleet

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wispfn/wisp/controller/scheduler"
)

// indexFleet is a fleet without a network whose index batches run when
// the test says (flush).
type indexFleet struct {
	*Fleet
	batches []func()
}

func newIndexFleet() *indexFleet {
	x := &indexFleet{Fleet: &Fleet{sessions: map[string]*Session{}}}
	x.index.init(x.current, func(fn func()) { x.batches = append(x.batches, fn) })
	return x
}

func (x *indexFleet) flush() {
	for _, fn := range x.batches {
		fn()
	}
	x.batches = nil
}

// connect makes a connected session of name with availMiB MiB free (and
// no metrics when availMiB is negative), as serveConn does.
func (x *indexFleet) connect(id, name string, availMiB int) *Session {
	s := &Session{ID: id, f: x.Fleet}
	s.hello.Name = name
	s.hello.MemTotalBytes = 4 << 30
	if availMiB >= 0 {
		s.memAvail.Store(uint64(availMiB) << 20)
		s.memKnown.Store(true)
	}
	s.digests.Store(newDigestSet())
	s.connected.Store(true)
	old := x.sessions[id]
	x.sessions[id] = s
	if old != nil {
		x.index.update(s, old)
	} else {
		x.index.update(s)
	}
	return s
}

// report is a load report of availMiB, as readControl takes it.
func (x *indexFleet) report(s *Session, availMiB int) {
	s.memAvail.Store(uint64(availMiB) << 20)
	s.memKnown.Store(true)
	if s.stale() {
		x.index.mark(s)
	}
}

func (x *indexFleet) names() []string {
	var out []string
	for _, e := range x.index.entries() {
		out = append(out, e.s.hello.Name)
	}
	return out
}

// TestIndexOrder: the index holds the connected, current sessions in
// scheduler.Order; a connection is indexed at once, a load report within
// the next batch, a disconnection leaves at the next batch (and is never
// picked meanwhile), and a reconnection replaces its agent's session.
func TestIndexOrder(t *testing.T) {
	x := newIndexFleet()
	a := x.connect("ag_a", "a", 100)
	b := x.connect("ag_b", "b", 300)
	x.connect("ag_c", "c", -1)
	d := x.connect("ag_d", "d", 300)
	if got, want := x.names(), []string{"b", "d", "a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("index %v, want %v", got, want)
	}
	pick := func() string {
		t.Helper()
		s, _, err := x.pickDefault(scheduler.Function{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.Name()
	}
	if got := pick(); got != "b" {
		t.Fatalf("picked %s, want b", got)
	}

	x.report(a, 500)
	x.report(b, 300) // unchanged: nothing to re-index
	if got, want := x.names(), []string{"b", "d", "a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("before the batch: index %v, want %v", got, want)
	}
	if len(x.batches) != 1 {
		t.Fatalf("%d batches scheduled, want 1", len(x.batches))
	}
	x.flush()
	if got, want := x.names(), []string{"a", "b", "d", "c"}; !slices.Equal(got, want) {
		t.Fatalf("after the batch: index %v, want %v", got, want)
	}
	if got := pick(); got != "a" {
		t.Fatalf("picked %s, want a", got)
	}

	a.connected.Store(false)
	x.index.mark(a)
	if got := pick(); got != "b" {
		t.Fatalf("with a disconnected: picked %s, want b", got)
	}
	x.flush()
	if got, want := x.names(), []string{"b", "d", "c"}; !slices.Equal(got, want) {
		t.Fatalf("after a left: index %v, want %v", got, want)
	}

	d2 := x.connect("ag_d", "d", 50) // d again, on a new session
	if got, want := x.names(), []string{"b", "d", "c"}; !slices.Equal(got, want) {
		t.Fatalf("after d reconnected: index %v, want %v", got, want)
	}
	for _, e := range x.index.entries() {
		if e.s == d {
			t.Fatal("the superseded session is still indexed")
		}
	}
	if es := x.index.entries(); es[1].s != d2 || es[1].avail != 50<<20 {
		t.Fatalf("d's entry: %+v", es[1])
	}
}

// TestPickDefaultMatchesPick: over random fleets with cordoned, suspect,
// excluded, disconnected and reconnected agents, pending load reports and
// invocations in flight, the index's decision is the one scheduler.Pick
// makes over every schedulable agent's candidate (candidates()), once the
// reports are indexed.
func TestPickDefaultMatchesPick(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 14))
	for round := range 300 {
		x := newIndexFleet()
		n := 1 + r.IntN(40)
		var ss []*Session
		for i := range n {
			avail := r.IntN(5) * 256
			if r.IntN(8) == 0 {
				avail = -1
			}
			s := x.connect(fmt.Sprintf("ag_%02d", i), fmt.Sprintf("edge%02d", r.IntN(n)), avail)
			if r.IntN(2) == 0 {
				s.addDigest("sha256:f")
			}
			ss = append(ss, s)
		}
		var exclude []*Session
		for _, s := range ss {
			switch r.IntN(12) {
			case 0:
				s.cordoned.Store(true)
			case 1:
				s.suspect.Store(s.lastSeen.Load() + 1)
			case 2:
				exclude = append(exclude, s)
			case 3:
				s.connected.Store(false)
				x.index.mark(s)
			case 4:
				x.connect(s.ID, s.hello.Name, r.IntN(5)*256)
			case 5:
				x.report(s, r.IntN(5)*256)
			}
			if r.IntN(3) == 0 {
				s.inflight.Store(int64(r.IntN(3)))
			}
		}
		x.flush()
		fn := scheduler.Function{Digest: "sha256:f", CapacityKiB: []uint64{0, 128 << 10, 512 << 10}[r.IntN(3)]}
		got, _, err := x.pickDefault(fn, exclude)
		buf := &candidateBuf{}
		x.candidates(fn.Digest, exclude, buf)
		i, wantErr := scheduler.Pick(buf.cs, fn, nil, nil)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("round %d: index %v, Pick %v", round, err, wantErr)
		}
		if err != nil {
			continue
		}
		want := buf.ss[i]
		if got != want {
			// Equal on every ranked field is as good a choice.
			gi := slices.Index(buf.ss, got)
			if gi < 0 {
				t.Fatalf("round %d: index picked %s, not a schedulable agent", round, got.Name())
			}
			g, w := buf.cs[gi], buf.cs[i]
			if g.HasDigest != w.HasDigest || g.MemKnown != w.MemKnown || g.MemAvail != w.MemAvail || g.InFlight != w.InFlight || g.Name != w.Name || g.ID != w.ID {
				t.Fatalf("round %d: index picked %+v, Pick %+v", round, g, w)
			}
		}
	}
}
