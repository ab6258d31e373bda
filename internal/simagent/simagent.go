// Package simagent simulates many Wisp agents in one process, for the scale
// benchmarks (internal/e2e BenchmarkTenThousandAgents) and the simagents
// tool. Each simulated agent is a real QUIC session with a controller: it
// joins with a join token (or comes back with its credential), keeps its
// control stream, sends load reports as the welcome tells it, reads what
// the controller sends on the control stream, and answers Invoke (a canned
// Result, nothing runs), Code (Ack) and Ping (Pong) streams. Every session
// of a Swarm shares one UDP socket and one quic.Transport, so ten thousand
// of them fit in one process and one port.
//
// It is a load generator, not an agent: it must never be linked by the
// agent or controller binaries, and it keeps only what a benchmark reads
// (invocation counts). Its QUIC settings default to the real agent's
// (agent/link), so the controller sees the same packets.
package simagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/protocol"
)

// Options shape every agent of a Swarm.
type Options struct {
	// KeepAlive and IdleTimeout are the agents' QUIC keep-alive period
	// and idle timeout; defaults link.KeepAlivePeriod and link.IdleTimeout.
	KeepAlive, IdleTimeout time.Duration
	// MemTotal and MemAvail are the memory reported in Hello and load
	// reports; defaults 1 GiB and 512 MiB.
	MemTotal, MemAvail uint64
	// ReportEvery, when set, overrides the load-report period the
	// welcome gives (a legacy agent reporting every 2 s, say).
	ReportEvery time.Duration
	// Labels are every agent's labels.
	Labels []string
}

// Swarm is a set of simulated agents on one UDP socket.
type Swarm struct {
	opts Options
	tr   *quic.Transport
	own  net.PacketConn // closed by Close when the swarm made it

	mu     sync.Mutex
	agents map[*Agent]struct{}
	wg     sync.WaitGroup
}

// New returns a Swarm sending from pc, or from a new UDP socket on
// 127.0.0.1 when pc is nil.
func New(pc net.PacketConn, opts Options) (*Swarm, error) {
	s := &Swarm{opts: opts, agents: map[*Agent]struct{}{}}
	if pc == nil {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		pc, s.own = udp, udp
	}
	if s.opts.KeepAlive <= 0 {
		s.opts.KeepAlive = link.KeepAlivePeriod
	}
	if s.opts.IdleTimeout <= 0 {
		s.opts.IdleTimeout = link.IdleTimeout
	}
	if s.opts.MemTotal == 0 {
		s.opts.MemTotal = 1 << 30
	}
	if s.opts.MemAvail == 0 {
		s.opts.MemAvail = 512 << 20
	}
	// Many connections share the socket: connection ids route packets.
	s.tr = &quic.Transport{Conn: pc, ConnectionIDLength: 4}
	return s, nil
}

// Agent is one simulated agent.
type Agent struct {
	swarm *Swarm
	conn  *quic.Conn
	ctrl  *quic.Stream
	// ID and Credential are what the controller issued at join.
	ID         string
	Credential []byte
	invoked    atomic.Int64
	reports    atomic.Int64
	beat       *time.Timer
	every      time.Duration
	beatMu     sync.Mutex
}

// Identity is what an agent that joined keeps to come back.
type Identity struct {
	ID         string
	Credential []byte
}

// Dial connects one agent named name to the controller at addr. token is a
// join token (its fingerprint is pinned); with id set, the agent presents
// that credential instead of joining.
func (s *Swarm) Dial(ctx context.Context, addr, token, name string, id *Identity) (*Agent, error) {
	tok, err := protocol.ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if protocol.KeyFingerprint(cs.PeerCertificates[0]) != tok.Fingerprint {
				return errors.New("controller key fingerprint mismatch")
			}
			return nil
		},
	}
	conn, err := s.tr.Dial(ctx, raddr, tlsConf, &quic.Config{
		KeepAlivePeriod: s.opts.KeepAlive, MaxIdleTimeout: s.opts.IdleTimeout,
		MaxIncomingStreams: 10000, MaxIncomingUniStreams: -1,
	})
	if err != nil {
		return nil, err
	}
	a := &Agent{swarm: s, conn: conn}
	if err := a.hello(ctx, tok, name, id); err != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "")
		return nil, err
	}
	s.mu.Lock()
	s.agents[a] = struct{}{}
	s.mu.Unlock()
	s.wg.Go(a.readControl)
	s.wg.Go(a.acceptStreams)
	a.scheduleReport()
	return a, nil
}

func (a *Agent) hello(ctx context.Context, tok protocol.JoinToken, name string, id *Identity) error {
	o := a.swarm.opts
	ctrl, err := a.conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	a.ctrl = ctrl
	h := &protocol.Hello{Name: name, OS: "linux", Arch: "sim", Engine: "compiler", Labels: o.Labels,
		MemTotalBytes: o.MemTotal, MemAvailBytes: o.MemAvail, CPUs: 1, ProtocolVersion: protocol.Version}
	if id != nil {
		h.AgentID, h.Credential = id.ID, id.Credential
	} else {
		h.JoinSecret = tok.Secret
	}
	if err := protocol.WriteMsg(ctrl, h); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		ctrl.SetReadDeadline(d)
	}
	msg, err := protocol.ReadMsg(ctrl, 1<<20)
	ctrl.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	w, ok := msg.(*protocol.Welcome)
	if !ok {
		return fmt.Errorf("hello answered with %v: %v", msg.Type(), msg)
	}
	a.ID, a.Credential = w.AgentID, w.Credential
	if id != nil {
		a.Credential = id.Credential
	}
	a.every = time.Duration(w.HeartbeatIntervalMS) * time.Millisecond
	if o.ReportEvery > 0 {
		a.every = o.ReportEvery
	}
	if a.every <= 0 {
		a.every = 2 * time.Second
	}
	return nil
}

// scheduleReport arms the next load report. A simulated agent's load
// never changes, so it reports only when its period is up, as the real
// agent does (agent/link: reports on change, or every period).
func (a *Agent) scheduleReport() {
	a.beatMu.Lock()
	defer a.beatMu.Unlock()
	if a.conn.Context().Err() != nil {
		return
	}
	a.beat = time.AfterFunc(a.every, func() {
		hb := &protocol.Heartbeat{MemAvailBytes: a.swarm.opts.MemAvail, SentUnixMS: uint64(time.Now().UnixMilli())}
		if protocol.WriteMsg(a.ctrl, hb) != nil {
			return
		}
		a.reports.Add(1)
		a.scheduleReport()
	})
}

// readControl reads and drops what the controller sends on the control
// stream (desired sets, drops, quarantine sets).
func (a *Agent) readControl() {
	for {
		if _, err := protocol.ReadMsg(a.ctrl, 1<<20); err != nil {
			return
		}
	}
}

func (a *Agent) acceptStreams() {
	for {
		s, err := a.conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go a.serve(s)
	}
}

func (a *Agent) serve(s *quic.Stream) {
	defer s.CancelRead(0) // end both directions, or stream credit leaks
	defer s.Close()
	msg, err := protocol.ReadMsg(s, protocol.MaxFrameSize)
	if err != nil {
		return
	}
	switch m := msg.(type) {
	case *protocol.Invoke:
		a.invoked.Add(1)
		protocol.WriteMsg(s, &protocol.Started{ActivationID: m.ActivationID})
		protocol.WriteMsg(s, &protocol.Result{ActivationID: m.ActivationID, Output: []byte(`{"sim":true}`)})
	case *protocol.Code:
		protocol.WriteMsg(s, &protocol.Ack{ID: m.Digest})
	case *protocol.Ping:
		protocol.WriteMsg(s, &protocol.Pong{Nonce: m.Nonce, Payload: m.Payload})
	}
}

// Invoked counts the Invokes the agent answered.
func (a *Agent) Invoked() int64 { return a.invoked.Load() }

// Reports counts the load reports the agent sent.
func (a *Agent) Reports() int64 { return a.reports.Load() }

// Connected reports whether the agent's connection is up.
func (a *Agent) Connected() bool { return a.conn.Context().Err() == nil }

// Identity is what the agent needs to come back without a join token.
func (a *Agent) Identity() *Identity { return &Identity{ID: a.ID, Credential: a.Credential} }

// Close ends the agent's session with CloseShutdown (it ran nothing, so
// every invocation stream it accepted was answered).
func (a *Agent) Close() {
	a.beatMu.Lock()
	if a.beat != nil {
		a.beat.Stop()
	}
	a.beatMu.Unlock()
	a.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "simulated agent closing")
	a.swarm.mu.Lock()
	delete(a.swarm.agents, a)
	a.swarm.mu.Unlock()
}

// Agents lists the swarm's agents that were not closed.
func (s *Swarm) Agents() []*Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Agent, 0, len(s.agents))
	for a := range s.agents {
		out = append(out, a)
	}
	return out
}

// Close closes every agent and the transport, and waits for the agents'
// goroutines.
func (s *Swarm) Close() {
	for _, a := range s.Agents() {
		a.Close()
	}
	s.tr.Close()
	if s.own != nil {
		s.own.Close()
	}
	s.wg.Wait()
}
