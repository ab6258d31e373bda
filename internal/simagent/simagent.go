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
	"maps"
	"math/rand/v2"
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
	ends   map[string]int // why sessions ended and redials failed, counted
	wg     sync.WaitGroup
}

// New returns a Swarm sending from pc, or from a new UDP socket on
// 127.0.0.1 when pc is nil.
func New(pc net.PacketConn, opts Options) (*Swarm, error) {
	s := &Swarm{opts: opts, agents: map[*Agent]struct{}{}, ends: map[string]int{}}
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

// Agent is one simulated agent. Like a real agent it reconnects, with its
// credential, when the controller closes its session or the connection
// times out, until Close.
type Agent struct {
	swarm *Swarm
	addr  string
	tok   protocol.JoinToken
	name  string
	// ID and Credential are what the controller issued at join.
	ID         string
	Credential []byte
	invoked    atomic.Int64
	reports    atomic.Int64
	reconnects atomic.Int64
	closed     atomic.Bool
	ownsSwarm  bool // DialOne's: Close closes the swarm too

	mu    sync.Mutex // guards the session's fields below
	conn  *quic.Conn
	ctrl  *quic.Stream
	beat  *time.Timer
	every time.Duration
}

// Identity is what an agent that joined keeps to come back.
type Identity struct {
	ID         string
	Credential []byte
}

// Dial connects one agent named name to the controller at addr and
// returns once it is welcomed. token is a join token (its fingerprint is
// pinned); with id set, the agent presents that credential instead of
// joining. After that the agent keeps its session up by itself.
func (s *Swarm) Dial(ctx context.Context, addr, token, name string, id *Identity) (*Agent, error) {
	tok, err := protocol.ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	a := &Agent{swarm: s, addr: addr, tok: tok, name: name}
	if err := a.connect(ctx, id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.agents[a] = struct{}{}
	s.mu.Unlock()
	s.wg.Go(a.keep)
	return a, nil
}

// connect dials, says hello and starts the session's goroutines.
func (a *Agent) connect(ctx context.Context, id *Identity) error {
	s := a.swarm
	raddr, err := net.ResolveUDPAddr("udp", a.addr)
	if err != nil {
		return err
	}
	fp := a.tok.Fingerprint
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if protocol.KeyFingerprint(cs.PeerCertificates[0]) != fp {
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
		return err
	}
	ctrl, every, err := a.hello(ctx, conn, id)
	if err != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "")
		return err
	}
	a.mu.Lock()
	a.conn, a.ctrl, a.every = conn, ctrl, every
	a.mu.Unlock()
	s.wg.Go(func() { readControl(ctrl) })
	s.wg.Go(func() { a.acceptStreams(conn) })
	a.scheduleReport(conn, ctrl)
	return nil
}

// keep reconnects the agent whenever its connection ends, with backoff,
// until Close.
func (a *Agent) keep() {
	backoff := 200 * time.Millisecond
	for {
		a.mu.Lock()
		conn := a.conn
		a.mu.Unlock()
		<-conn.Context().Done()
		if !a.closed.Load() {
			a.swarm.count("session ended: " + context.Cause(conn.Context()).Error())
		}
		for {
			if a.closed.Load() {
				return
			}
			time.Sleep(backoff/2 + rand.N(backoff/2+1))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := a.connect(ctx, &Identity{ID: a.ID, Credential: a.Credential})
			cancel()
			if err != nil {
				a.swarm.count("redial failed: " + err.Error())
			}
			if err == nil && a.closed.Load() {
				a.mu.Lock()
				a.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "simulated agent closing")
				a.mu.Unlock()
				return
			}
			if err == nil {
				a.reconnects.Add(1)
				backoff = 200 * time.Millisecond
				break
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

func (a *Agent) hello(ctx context.Context, conn *quic.Conn, id *Identity) (*quic.Stream, time.Duration, error) {
	o := a.swarm.opts
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, 0, err
	}
	h := &protocol.Hello{Name: a.name, OS: "linux", Arch: "sim", Engine: "compiler", Labels: o.Labels,
		MemTotalBytes: o.MemTotal, MemAvailBytes: o.MemAvail, CPUs: 1, ProtocolVersion: protocol.Version}
	if id != nil {
		h.AgentID, h.Credential = id.ID, id.Credential
	} else {
		h.JoinSecret = a.tok.Secret
	}
	if err := protocol.WriteMsg(ctrl, h); err != nil {
		return nil, 0, err
	}
	if d, ok := ctx.Deadline(); ok {
		ctrl.SetReadDeadline(d)
	}
	msg, err := protocol.ReadMsg(ctrl, 1<<20)
	ctrl.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, 0, err
	}
	w, ok := msg.(*protocol.Welcome)
	if !ok {
		return nil, 0, fmt.Errorf("hello answered with %v: %v", msg.Type(), msg)
	}
	if id == nil {
		a.ID, a.Credential = w.AgentID, w.Credential
	}
	every := time.Duration(w.HeartbeatIntervalMS) * time.Millisecond
	if o.ReportEvery > 0 {
		every = o.ReportEvery
	}
	if every <= 0 {
		every = 2 * time.Second
	}
	return ctrl, every, nil
}

// scheduleReport arms the next load report of a session. A simulated
// agent's load never changes, so it reports only when its period is up, as
// the real agent does (agent/link: reports on change, or every period).
func (a *Agent) scheduleReport(conn *quic.Conn, ctrl *quic.Stream) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if conn.Context().Err() != nil || a.closed.Load() {
		return
	}
	a.beat = time.AfterFunc(a.every, func() {
		hb := &protocol.Heartbeat{MemAvailBytes: a.swarm.opts.MemAvail, SentUnixMS: uint64(time.Now().UnixMilli())}
		if protocol.WriteMsg(ctrl, hb) != nil {
			return
		}
		a.reports.Add(1)
		a.scheduleReport(conn, ctrl)
	})
}

// readControl reads and drops what the controller sends on the control
// stream (desired sets, drops, quarantine sets).
func readControl(ctrl *quic.Stream) {
	for {
		if _, err := protocol.ReadMsg(ctrl, 1<<20); err != nil {
			return
		}
	}
}

func (a *Agent) acceptStreams(conn *quic.Conn) {
	for {
		s, err := conn.AcceptStream(context.Background())
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

// Reconnects counts the sessions the agent made again after one ended.
func (a *Agent) Reconnects() int64 { return a.reconnects.Load() }

// Connected reports whether the agent's connection is up.
func (a *Agent) Connected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn.Context().Err() == nil
}

// Identity is what the agent needs to come back without a join token.
func (a *Agent) Identity() *Identity { return &Identity{ID: a.ID, Credential: a.Credential} }

// DialOne dials one agent on a swarm of its own (one UDP socket), which
// its Close closes: for tests that need an agent or two.
func DialOne(ctx context.Context, addr, token, name string, opts Options) (*Agent, error) {
	s, err := New(nil, opts)
	if err != nil {
		return nil, err
	}
	a, err := s.Dial(ctx, addr, token, name, nil)
	if err != nil {
		s.Close()
		return nil, err
	}
	a.ownsSwarm = true
	return a, nil
}

// Close ends the agent's session with CloseShutdown (it ran nothing, so
// every invocation stream it accepted was answered), and stops it coming
// back.
func (a *Agent) Close() {
	a.closeSession()
	if a.ownsSwarm {
		a.swarm.Close()
	}
}

func (a *Agent) closeSession() {
	a.closed.Store(true)
	a.mu.Lock()
	if a.beat != nil {
		a.beat.Stop()
	}
	conn := a.conn
	a.mu.Unlock()
	conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "simulated agent closing")
	a.swarm.mu.Lock()
	delete(a.swarm.agents, a)
	a.swarm.mu.Unlock()
}

func (s *Swarm) count(why string) {
	if len(why) > 120 {
		why = why[:120]
	}
	s.mu.Lock()
	s.ends[why]++
	s.mu.Unlock()
}

// Ends counts why sessions ended and why dials to make them again failed
// (the error texts, cut at 120 bytes), since the swarm began.
func (s *Swarm) Ends() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.ends)
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
		a.closeSession()
	}
	s.tr.Close()
	if s.own != nil {
		s.own.Close()
	}
	s.wg.Wait()
}
