package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// fakeAgent is a hand-driven agent for the delivery tests: it joins, sends
// heartbeats, answers Pings, and answers every Invoke with what answer
// says, after delay.
type fakeAgent struct {
	conn    *quic.Conn
	invoked atomic.Int64
	// quarantine is the last Quarantine set received.
	quarantine atomic.Pointer[protocol.Quarantine]
	welcome    *protocol.Welcome
}

type fakeBehaviour struct {
	delay  time.Duration // before the first frame on an invocation stream
	answer func(*protocol.Invoke) []protocol.Message
	hello  func(*protocol.Hello)
}

func startFakeAgent(t *testing.T, c *testController, name string, b fakeBehaviour) *fakeAgent {
	t.Helper()
	tok, err := protocol.ParseJoinToken(c.token)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, InsecureSkipVerify: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, c.addr, tlsConf, &quic.Config{KeepAlivePeriod: time.Second, MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &protocol.Hello{Name: name, OS: "linux", Arch: "fake", Engine: "compiler", MemTotalBytes: 8 << 30, MemAvailBytes: 8 << 30,
		CPUs: 1, JoinSecret: tok.Secret, ProtocolVersion: protocol.Version}
	if b.hello != nil {
		b.hello(hello)
	}
	if err := protocol.WriteMsg(ctrl, hello); err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.ReadMsg(ctrl, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := msg.(*protocol.Welcome)
	if !ok {
		t.Fatalf("hello answered with %v", msg.Type())
	}
	a := &fakeAgent{conn: conn, welcome: w}
	go func() {
		for {
			select {
			case <-conn.Context().Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			if protocol.WriteMsg(ctrl, &protocol.Heartbeat{MemAvailBytes: 8 << 30}) != nil {
				return
			}
		}
	}()
	go func() {
		for {
			m, err := protocol.ReadMsg(ctrl, 1<<20)
			if err != nil {
				return
			}
			if q, ok := m.(*protocol.Quarantine); ok {
				a.quarantine.Store(q)
			}
		}
	}()
	go func() {
		for {
			s, err := conn.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				defer s.CancelRead(0)
				defer s.Close()
				msg, err := protocol.ReadMsg(s, protocol.MaxFrameSize)
				if err != nil {
					return
				}
				switch m := msg.(type) {
				case *protocol.Invoke:
					a.invoked.Add(1)
					time.Sleep(b.delay)
					for _, r := range b.answer(m) {
						if protocol.WriteMsg(s, r) != nil {
							return
						}
					}
				case *protocol.Ping:
					protocol.WriteMsg(s, &protocol.Pong{Nonce: m.Nonce, Payload: m.Payload})
				}
			}()
		}
	}()
	return a
}

// runs answers Started, then an OK Result.
func runs(output string) func(*protocol.Invoke) []protocol.Message {
	return func(m *protocol.Invoke) []protocol.Message {
		return []protocol.Message{&protocol.Started{ActivationID: m.ActivationID}, &protocol.Result{ActivationID: m.ActivationID, Output: []byte(output)}}
	}
}

// preferScript makes name the scheduler's first choice, then the others.
func preferScript(t *testing.T, c *testController, name string) invoke.Scheduling {
	t.Helper()
	src := "- default:\n    - workers: [" + name + "]\n    - workers: \"*\"\n  followup: fail\n"
	if _, err := c.store.PutScript(context.Background(), store.Script{Name: "prefer_" + name, Source: []byte(src)}); err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	return invoke.Scheduling{Language: "app", Script: "prefer_" + name}
}

// TestSlowStartRunsOnce: an agent that starts an invocation only after the
// start timeout is waited for; the call is not run again elsewhere and is
// not answered 503.
func TestSlowStartRunsOnce(t *testing.T) {
	c := startController(t)
	c.fleet.cfg.StartTimeout = 200 * time.Millisecond
	slow := startFakeAgent(t, c, "slow", fakeBehaviour{delay: 700 * time.Millisecond, answer: runs(`{"from":"slow"}`)})
	other := startAgent(t, c.addr, c.token, "other", t.TempDir())
	waitFor(t, "two agents", func() bool { return c.fleet.Connected() == 2 })
	fn := createFunction(t, c.store, "hello", "hello_c", "")
	out, err := invokeFn(t, c, fn, `{}`, preferScript(t, c, "slow"))
	if err != nil || out != `{"from":"slow"}` {
		t.Fatalf("slow start: %s %v", out, err)
	}
	if n, m := slow.invoked.Load(), other.exec.Total(); n != 1 || m != 0 {
		t.Fatalf("the call ran %d times on the slow agent and %d on the other, want once", n, m)
	}
	if q := (*c.fleet.quarantine.holds.Load()); len(q) != 0 {
		t.Fatalf("a slow agent that answers Pings got code held: %v", q)
	}
}

// TestSlowStartIdempotentRunsElsewhere: the same slow agent, a function
// marked idempotent: it is cancelled there and run on the other agent.
func TestSlowStartIdempotentRunsElsewhere(t *testing.T) {
	c := startController(t)
	c.fleet.cfg.StartTimeout = 200 * time.Millisecond
	slow := startFakeAgent(t, c, "slow", fakeBehaviour{delay: 2 * time.Second, answer: runs(`{"from":"slow"}`)})
	other := startAgent(t, c.addr, c.token, "other", t.TempDir())
	waitFor(t, "two agents", func() bool { return c.fleet.Connected() == 2 })
	fn := createFunction(t, c.store, "hello", "hello_c", `{"idempotent":true}`)
	t0 := time.Now()
	out, err := invokeFn(t, c, fn, `{"name":"I"}`, preferScript(t, c, "slow"))
	if err != nil || out != `{"payload":"Hello I!"}` {
		t.Fatalf("idempotent slow start: %s %v", out, err)
	}
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Fatalf("took %v: it waited for the slow agent", d)
	}
	if n, m := slow.invoked.Load(), other.exec.Total(); n != 1 || m != 1 {
		t.Fatalf("slow agent got %d, other ran %d; want 1 and 1", n, m)
	}
}

// TestRefusalRunsElsewhere: an agent that answers Draining or Overloaded
// (it ran nothing) makes the call run on another agent; when every agent
// refuses, the answer is 503 (nothing ran).
func TestRefusalRunsElsewhere(t *testing.T) {
	c := startController(t)
	refuse := func(code protocol.ErrorCode) func(*protocol.Invoke) []protocol.Message {
		return func(m *protocol.Invoke) []protocol.Message {
			return []protocol.Message{&protocol.Result{ActivationID: m.ActivationID, Code: code, Message: "not now"}}
		}
	}
	draining := startFakeAgent(t, c, "draining", fakeBehaviour{answer: refuse(protocol.Draining)})
	waitFor(t, "one agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(t, c.store, "hello", "hello_c", "")
	if _, err := invokeFn(t, c, fn, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrNoWorker) || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("the only agent refused: %v, want ErrNoWorker", err)
	}
	busy := startFakeAgent(t, c, "busy", fakeBehaviour{answer: refuse(protocol.Overloaded)})
	other := startAgent(t, c.addr, c.token, "other", t.TempDir())
	waitFor(t, "three agents", func() bool { return c.fleet.Connected() == 3 })
	before := draining.invoked.Load() + busy.invoked.Load()
	src := "- default:\n    - workers: [draining]\n    - workers: [busy]\n    - workers: [other]\n  followup: fail\n"
	if _, err := c.store.PutScript(context.Background(), store.Script{Name: "refusers_first", Source: []byte(src)}); err != nil {
		t.Fatal(err)
	}
	out, err := invokeFn(t, c, fn, `{"name":"R"}`, invoke.Scheduling{Language: "app", Script: "refusers_first"})
	if err != nil || out != `{"payload":"Hello R!"}` {
		t.Fatalf("after refusals: %s %v", out, err)
	}
	if n := draining.invoked.Load() + busy.invoked.Load() - before; n != 2 || other.exec.Total() != 1 {
		t.Fatalf("refusers got %d, other ran %d; want 2 and 1", n, other.exec.Total())
	}
}

// TestSilentAgentRunsNothingTwice: an agent that vanishes without closing
// its connection (kill -9, a cut cable) after an Invoke reached it: the
// call is not run elsewhere (the agent may have died of it) and fails with
// "lost, may have run" (502), not 503; the digest is held meanwhile, while
// other functions run on the other agent; the hold ends after CrashHold.
func TestSilentAgentRunsNothingTwice(t *testing.T) {
	c := startController(t)
	c.fleet.cfg.StartTimeout = 300 * time.Millisecond
	c.fleet.cfg.CrashHold = time.Second
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	doomed := startAgentOn(t, c.addr, c.token, "doomed", t.TempDir(), pc)
	waitFor(t, "doomed agent", func() bool { return c.fleet.Connected() == 1 })
	survivor := startAgent(t, c.addr, c.token, "survivor", t.TempDir())
	waitFor(t, "both agents", func() bool { return c.fleet.Connected() == 2 })
	fn := createFunction(t, c.store, "hello", "hello_c", "")
	echo := createFunction(t, c.store, "echo", "echo_rust", "")
	sched := preferScript(t, c, "doomed")
	pc.Close() // the agent's packets stop; its connection is not closed

	_, err = invokeFn(t, c, fn, `{"name":"S"}`, sched)
	if !errors.Is(err, invoke.ErrLost) || errors.Is(err, invoke.ErrNoWorker) || !strings.Contains(err.Error(), "may have run") {
		t.Fatalf("call with a silent agent: %v, want ErrLost", err)
	}
	if doomed.exec.Total() != 0 || survivor.exec.Total() != 0 {
		t.Fatalf("ran %d times on the silent agent, %d on the survivor; want 0 and 0", doomed.exec.Total(), survivor.exec.Total())
	}
	if _, err := invokeFn(t, c, fn, `{}`, sched); !errors.Is(err, invoke.ErrQuarantined) || !strings.Contains(err.Error(), "held") {
		t.Fatalf("right after: %v, want the digest held", err)
	}
	if out, err := invokeFn(t, c, echo, `{"other":1}`, sched); err != nil || out != `{"other":1}` {
		t.Fatalf("another function while the digest is held: %s %v", out, err)
	}
	waitFor(t, "the hold to end", func() bool {
		out, err := invokeFn(t, c, fn, `{"name":"S"}`, sched)
		return err == nil && out == `{"payload":"Hello S!"}`
	})
}

// TestCrashReportQuarantines: an agent whose Hello reports a crash gets a
// Welcome saying it is recorded; the digest is quarantined in the store,
// refused by the dispatcher (423) and sent to every agent, which refuses it
// too; a release lets it run again everywhere.
func TestCrashReportQuarantines(t *testing.T) {
	c := startController(t)
	real := startAgent(t, c.addr, c.token, "real", t.TempDir())
	waitFor(t, "real agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(t, c.store, "hello", "hello_c", "")
	if _, err := invokeFn(t, c, fn, `{}`, invoke.Scheduling{}); err != nil {
		t.Fatal(err)
	}
	crashed := startFakeAgent(t, c, "crashed", fakeBehaviour{answer: runs(`{}`), hello: func(h *protocol.Hello) {
		h.Crashed = []protocol.QuarantineEntry{
			{Digest: fn.Digest, Reason: "the agent died while running this code", SinceUnixMS: 1764028800000},
			{Digest: "not a digest", Reason: "hostile"},
		}
	}})
	if !crashed.welcome.CrashesRecorded {
		t.Fatal("Welcome.CrashesRecorded is false")
	}
	qs, err := c.store.ListQuarantine(context.Background())
	if err != nil || len(qs) != 1 || qs[0].Digest != fn.Digest || qs[0].Agent == "" || qs[0].Since.UnixMilli() != 1764028800000 {
		t.Fatalf("store quarantine = %+v, %v", qs, err)
	}
	if _, err := invokeFn(t, c, fn, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrQuarantined) || !strings.Contains(err.Error(), "quarantined: agent crashed died") {
		t.Fatalf("invoke of quarantined code: %v", err)
	}
	waitFor(t, "the real agent to get the quarantine", func() bool {
		_, ok := real.state.Quarantined(fn.Digest)
		return ok
	})
	// The reporting agent gets the set on its own stream, maybe later.
	waitFor(t, "the reporting agent to get the quarantine", func() bool {
		q := crashed.quarantine.Load()
		return q != nil && len(q.Entries) == 1 && q.Entries[0].Digest == fn.Digest
	})
	list, err := c.fleet.ListQuarantine(context.Background())
	if err != nil || len(list) != 1 || list[0].State != QuarantineStateQuarantined || list[0].AgentName != "crashed" {
		t.Fatalf("ListQuarantine = %+v, %v", list, err)
	}

	if err := c.fleet.ReleaseQuarantine(context.Background(), fn.Digest); err != nil {
		t.Fatal(err)
	}
	if err := c.fleet.ReleaseQuarantine(context.Background(), fn.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second release: %v", err)
	}
	waitFor(t, "the real agent to drop the quarantine", func() bool {
		_, ok := real.state.Quarantined(fn.Digest)
		return !ok
	})
	waitFor(t, "the reporting agent to drop the quarantine", func() bool {
		q := crashed.quarantine.Load()
		return q != nil && len(q.Entries) == 0
	})
	if out, err := invokeFn(t, c, fn, `{"name":"again"}`, preferScript(t, c, "real")); err != nil || out != `{"payload":"Hello again!"}` {
		t.Fatalf("after the release: %s %v", out, err)
	}
}

// TestHoldEndsWhenTheAgentReturns: a digest held after its agent went
// silent is released as soon as that agent reconnects without reporting a
// crash (it was cut off, not killed), long before CrashHold.
func TestHoldEndsWhenTheAgentReturns(t *testing.T) {
	c := startController(t)
	c.fleet.cfg.StartTimeout = 300 * time.Millisecond
	c.fleet.cfg.CrashHold = time.Minute
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	doomed := startAgentOn(t, c.addr, c.token, "doomed", dir, pc)
	// Its identity stored too, so that it comes back as the same agent.
	waitFor(t, "doomed agent", func() bool { return c.fleet.Connected() == 1 && doomed.link.Connected() })
	fn := createFunction(t, c.store, "hello", "hello_c", "")
	pc.Close()
	if _, err := invokeFn(t, c, fn, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrLost) {
		t.Fatalf("call with a silent agent: %v", err)
	}
	if _, err := invokeFn(t, c, fn, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrQuarantined) {
		t.Fatalf("after: %v, want held", err)
	}
	doomed.stop()
	back := startAgent(t, c.addr, c.token, "doomed", dir)
	waitFor(t, "the agent back", back.link.Connected)
	if out, err := invokeFn(t, c, fn, `{"name":"back"}`, invoke.Scheduling{}); err != nil || out != `{"payload":"Hello back!"}` {
		t.Fatalf("after the agent came back: %s %v", out, err)
	}
	if back.exec.Total() != 1 {
		t.Fatalf("the returned agent ran %d calls", back.exec.Total())
	}
}
