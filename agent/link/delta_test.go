package link

import (
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

// resyncs reads the control stream's heartbeats in the background and
// counts those asking for the full desired set.
func (s *session) resyncs(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			m, err := protocol.ReadMsg(s.ctrl, protocol.MaxFrameSize)
			if err != nil {
				return
			}
			if hb, ok := m.(*protocol.Heartbeat); ok && hb.DesiredResync {
				n.Add(1)
			}
		}
	}()
	return &n
}

func (a *agent) desiredNames(t *testing.T) []string {
	t.Helper()
	fs, err := a.st.Desired()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func (a *agent) onDesiredCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.desired)
}

// TestDesiredDeltas: a delta applies only to the set named by its base,
// changing only the functions it names; the same change from another
// controller is not news; a delta for another set is refused, the agent
// asks for the full set, and the full set heals it; the local triggers
// are resynced only when a delta touches a function that has some; after
// a restart the stored set keeps its name.
func TestDesiredDeltas(t *testing.T) {
	c, a, s := connectedAgent(t)
	asked := s.resyncs(t)
	fn := func(name string, topics ...string) protocol.DesiredFunction {
		return protocol.DesiredFunction{Module: "_", Name: name, Digest: "sha256:00", LocalTopics: topics}
	}
	d1, d2, d3, other := protocol.SetDigest{1}, protocol.SetDigest{2}, protocol.SetDigest{3}, protocol.SetDigest{9}
	wantNames := func(what string, names ...string) {
		t.Helper()
		testwait.For(t, 10*time.Second, what, func() bool { return slices.Equal(a.desiredNames(t), names) })
	}

	s.send(t, &protocol.DesiredSet{Functions: []protocol.DesiredFunction{fn("f"), fn("g", "t/#")}, Digest: d1})
	wantNames("the full set", "f", "g")
	// OnDesired runs after the store's commit: the names can show first.
	testwait.For(t, 10*time.Second, "OnDesired after the full set", func() bool { return a.onDesiredCalls() >= 1 })
	if a.st.DesiredDigest() != d1 || a.onDesiredCalls() != 1 {
		t.Fatalf("after the full set: digest %x, %d OnDesired calls", a.st.DesiredDigest(), a.onDesiredCalls())
	}

	// f out, h in: neither has triggers.
	s.send(t, &protocol.DesiredDelta{Base: d1, Result: d2, Upserts: []protocol.DesiredFunction{fn("h")}, Removes: []protocol.FunctionName{{Module: "_", Name: "f"}}})
	wantNames("the first delta", "g", "h")
	// g (which has triggers) out, and a name the agent lacks: nothing to remove.
	s.send(t, &protocol.DesiredDelta{Base: d2, Result: d3, Removes: []protocol.FunctionName{{Module: "_", Name: "g"}, {Module: "_", Name: "nope"}}})
	wantNames("the second delta", "h")
	testwait.For(t, 10*time.Second, "OnDesired after the second delta", func() bool { return a.onDesiredCalls() >= 2 })
	if n := a.onDesiredCalls(); n != 2 {
		t.Fatalf("%d OnDesired calls, want 2 (the set, the delta that removed g)", n)
	}
	// Another controller's copy of the first change: its base is gone,
	// but the agent holds its result already... of the second: not news.
	s.send(t, &protocol.DesiredDelta{Base: d2, Result: d3, Removes: []protocol.FunctionName{{Module: "_", Name: "g"}}})
	// A delta for a set the agent does not hold: refused, and asked for.
	s.send(t, &protocol.DesiredDelta{Base: other, Result: protocol.SetDigest{10}, Upserts: []protocol.DesiredFunction{fn("x")}})
	testwait.For(t, 10*time.Second, "a request for the full set", func() bool { return asked.Load() == 1 })
	if got := a.desiredNames(t); !slices.Equal(got, []string{"h"}) || a.st.DesiredDigest() != d3 {
		t.Fatalf("a delta on the wrong base changed the set: %v, digest %x", got, a.st.DesiredDigest())
	}
	// The full set heals it, and deltas apply again.
	s.send(t, &protocol.DesiredSet{Functions: []protocol.DesiredFunction{fn("x")}, Digest: protocol.SetDigest{10}})
	wantNames("the full set after the request", "x")
	s.send(t, &protocol.DesiredDelta{Base: protocol.SetDigest{10}, Result: protocol.SetDigest{11}, Upserts: []protocol.DesiredFunction{fn("y")}})
	wantNames("a delta after the full set", "x", "y")
	if n := asked.Load(); n != 1 {
		t.Fatalf("%d requests for the full set, want 1 (the not-news delta asked too?)", n)
	}

	// A new link on the same state (the agent restarted): the stored set
	// keeps its name, so a delta on it applies; one on an older set does
	// not.
	a.stop()
	a2 := a.restart(t, c)
	s2 := c.accept(t)
	s2.welcome(t, "agent-1", []byte("cred"))
	asked2 := s2.resyncs(t)
	s2.send(t, &protocol.DesiredDelta{Base: d3, Result: protocol.SetDigest{12}, Upserts: []protocol.DesiredFunction{fn("z")}})
	testwait.For(t, 10*time.Second, "a request after the restart", func() bool { return asked2.Load() == 1 })
	s2.send(t, &protocol.DesiredDelta{Base: protocol.SetDigest{11}, Result: protocol.SetDigest{12}, Upserts: []protocol.DesiredFunction{fn("z")}})
	testwait.For(t, 10*time.Second, "the delta on the stored set", func() bool { return slices.Equal(a2.desiredNames(t), []string{"x", "y", "z"}) })
}

// TestHostileDelta: a delta that names a function twice ends the session
// (a malformed control frame) and changes nothing; the agent comes back.
func TestHostileDelta(t *testing.T) {
	c, a, s := connectedAgent(t)
	s.send(t, &protocol.DesiredSet{Functions: []protocol.DesiredFunction{{Module: "_", Name: "f"}}, Digest: protocol.SetDigest{1}})
	testwait.For(t, 10*time.Second, "the full set", func() bool { return a.st.DesiredDigest() == protocol.SetDigest{1} })
	f := protocol.DesiredFunction{Module: "_", Name: "g"}
	payload := (&protocol.DesiredDelta{Base: protocol.SetDigest{1}, Result: protocol.SetDigest{2}, Upserts: []protocol.DesiredFunction{f}}).Append(nil)
	payload = append(payload, 3, byte(len(f.Append(nil))))
	payload = append(payload, f.Append(nil)...) // g again
	if err := protocol.WriteFrame(s.ctrl, protocol.Frame{Type: protocol.TypeDesiredDelta, Payload: payload}); err != nil {
		t.Fatal(err)
	}
	s2 := c.accept(t) // the agent reconnects
	s2.welcome(t, "agent-1", []byte("cred"))
	if got := a.desiredNames(t); !slices.Equal(got, []string{"f"}) || a.st.DesiredDigest() != (protocol.SetDigest{1}) {
		t.Fatalf("a malformed delta changed the set: %v", got)
	}
}

// connectedAgent runs an agent with a session to a test controller.
func connectedAgent(t *testing.T) (*controller, *agent, *session) {
	t.Helper()
	c := newController(t)
	a := newAgent(t, c, c.token("secret-of-16-bytes"))
	a.run(t)
	s := c.accept(t)
	s.welcome(t, "agent-1", []byte("cred"))
	return c, a, s
}

// restart stops a's link and runs a new one on the same state, as an
// agent restarted would.
func (a *agent) restart(t *testing.T, c *controller) *agent {
	t.Helper()
	a.wait(t)
	b := &agent{st: a.st, ex: a.ex, log: &logBuffer{}}
	var err error
	b.link, err = New(Config{Addr: c.addr, State: a.st, Executor: a.ex, Name: "edge",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	b.run(t)
	return b
}
