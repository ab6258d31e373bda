package link

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/fault"
	"github.com/wispfn/wisp/internal/quicstream"
	"github.com/wispfn/wisp/internal/version"
	"github.com/wispfn/wisp/protocol"
)

// Config configures a Link.
type Config struct {
	// Addr is the controller's QUIC address, host:port: the address
	// dialled.
	Addr string
	// Controller is the controller's address as the operator gave it (a
	// host name, for a Pool's links, that resolved to Addr); it names the
	// link in logs and status. Default Addr.
	Controller string
	// JoinToken is needed only until the agent has joined (its identity is
	// then in State). Empty when the agent already has an identity.
	JoinToken string
	State     *state.State
	Executor  *executor.Executor
	// Name and Labels describe the agent (labels are "key=value").
	Name   string
	Labels []string
	// MinBackoff and MaxBackoff bound reconnection delays. Defaults 200ms, 5s.
	MinBackoff, MaxBackoff time.Duration
	// RefusedBackoff is the delay before a link whose controller refused
	// the agent, while other controllers accept it, tries again (a
	// controller on a wrong database may be fixed). Default 30s.
	RefusedBackoff time.Duration
	// RestartDelay bounds the wait before reconnecting to a controller
	// that closed the session because it is shutting down (a rolling
	// restart): a random delay between a fifth of it and all of it, so that
	// its agents do not all come back in the same instant. Default 5s.
	RestartDelay time.Duration
	// PacketConn, when set, is used instead of a new UDP socket (tests).
	PacketConn net.PacketConn
	// MaxStreams bounds the streams the controller may open at once
	// (concurrent invocations and code pushes). Default 10000.
	MaxStreams int
	// OnDesired, when set, is called after each change of the stored
	// desired set, with the set's functions (a full set) or the delta's
	// upserts, and triggers: whether the change may have touched local
	// triggers or timers (always for a full set; for a delta, when a
	// function it named has some, before or after). The agent re-syncs
	// its triggers and timers then, and only then.
	OnDesired func(fs []protocol.DesiredFunction, triggers bool)
	Logger    *slog.Logger
}

// maxControlFrame bounds control-stream frames; code frames may be larger.
const maxControlFrame = 1 << 20

// ErrRefused: the controller refused this agent's credentials and no join
// token can fix it. Run stops with it.
var ErrRefused = errors.New("the controller refused this agent")

// Link is one agent↔controller connection, kept up by Run.
type Link struct {
	cfg       Config
	sh        *shared       // what the agent's links share: identity, outbox drain
	kick      chan struct{} // wakes the outbox drain
	handlers  atomic.Int64  // stream handlers in flight
	token     *protocol.JoinToken
	log       *slog.Logger
	connected atomic.Bool
	// stateMu guards since, lastErr, note and controllerID, for Status.
	stateMu      sync.Mutex
	since        time.Time // when the link last came up or went down
	lastErr      string
	note         string // what the link waits for, when it is down on purpose
	controllerID string // the Welcome's controller id, kept after the session ends
	// drainsOutbox: this link holds the agent's outbox drain.
	drainsOutbox atomic.Bool
	// retiring: the Pool no longer resolves this link's address; Run
	// returns once its session ends. wake interrupts a wait between
	// sessions.
	retiring atomic.Bool
	wake     chan struct{}
	welcomes atomic.Uint64 // sessions welcomed
	// draining: the agent is stopping; new invocations are answered
	// Result{Draining} without running.
	draining atomic.Bool
	// kept are digests a Drop named while the desired set still did: they
	// are dropped when a later desired set no longer names them. Only the
	// control loop touches it.
	kept map[string]bool
}

// New checks cfg and returns a Link of its own: an agent with one
// controller. An agent with several runs a Pool, whose links share the
// agent's identity and outbox. New does no I/O.
func New(cfg Config) (*Link, error) {
	sh, err := newShared(cfg)
	if err != nil {
		return nil, err
	}
	return newLink(cfg, sh)
}

// parseToken parses cfg's join token, nil when there is none.
func parseToken(cfg Config) (*protocol.JoinToken, error) {
	if cfg.JoinToken == "" {
		return nil, nil
	}
	t, err := protocol.ParseJoinToken(cfg.JoinToken)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	return &t, nil
}

// newLink returns a Link sharing sh with the agent's other links.
func newLink(cfg Config, sh *shared) (*Link, error) {
	if cfg.Addr == "" {
		return nil, errors.New("link: controller address is required")
	}
	if cfg.State == nil || cfg.Executor == nil {
		return nil, errors.New("link: state and executor are required")
	}
	if cfg.Controller == "" {
		cfg.Controller = cfg.Addr
	}
	l := &Link{cfg: cfg, sh: sh, log: cfg.Logger, kick: make(chan struct{}, 1), wake: make(chan struct{}, 1), token: sh.ids.token}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Controller != cfg.Addr {
		l.log = l.log.With("controller", cfg.Controller, "addr", cfg.Addr)
	} else {
		l.log = l.log.With("controller", cfg.Addr)
	}
	if l.cfg.MinBackoff <= 0 {
		l.cfg.MinBackoff = 200 * time.Millisecond
	}
	if l.cfg.MaxBackoff <= 0 {
		// Short: a failed dial costs a few packets, and an edge box that
		// comes back from a partition should be heard from within seconds.
		l.cfg.MaxBackoff = 5 * time.Second
	}
	if l.cfg.RefusedBackoff <= 0 {
		l.cfg.RefusedBackoff = 30 * time.Second
	}
	if l.cfg.RestartDelay <= 0 {
		l.cfg.RestartDelay = 5 * time.Second
	}
	if l.cfg.MaxStreams <= 0 {
		l.cfg.MaxStreams = 10000
	}
	// It counts among the links whose answers decide the identity's fate
	// from now on, before any link's Run can be refused.
	sh.ids.add(l)
	if l.cfg.Name == "" {
		l.cfg.Name, _ = osHostname()
	}
	return l, nil
}

// Connected reports whether the link is up now.
func (l *Link) Connected() bool { return l.connected.Load() }

// Status is the link's state for `wisp-agent status`: up or down, since
// when, the error that ended its last session or dial, and what it waits
// for when it is down on purpose.
func (l *Link) Status() status.Link {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	st := status.Link{Controller: l.cfg.Controller, ControllerID: l.controllerID, Connected: l.connected.Load(), Since: l.since,
		LastError: l.lastErr, Note: l.note, DrainsOutbox: l.drainsOutbox.Load()}
	if l.cfg.Addr != l.cfg.Controller {
		st.Address = l.cfg.Addr
	}
	return st
}

// setState records a change of state (err: why the link is down).
func (l *Link) setState(up bool, err error) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if up != l.connected.Load() || l.since.IsZero() {
		l.since = time.Now()
	}
	l.connected.Store(up)
	if err != nil {
		l.lastErr = err.Error()
	}
	if up {
		l.note = ""
	}
}

// setNote says what the link waits for ("" when it does not).
func (l *Link) setNote(note string) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	l.note = note
}

// retire makes Run return once the session in progress, if any, ends
// (on is false: the address is back, keep going).
func (l *Link) retire(on bool) {
	l.retiring.Store(on)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run keeps the link up until ctx is done. It returns ErrRefused when the
// agent is refused for good (see keeper: every link's controller refused
// it), nil when a Pool retired the link, otherwise ctx's error.
func (l *Link) Run(ctx context.Context) error {
	defer l.sh.ids.remove(l) // newLink added it
	backoff := l.cfg.MinBackoff
	// restarting: the controller said it was shutting down and has not
	// welcomed this link since; its dial failures are expected.
	var restarting bool
	welcomes := l.welcomes.Load()
	l.setState(false, nil)
	for {
		if l.retiring.Load() {
			l.log.Info("controller address no longer resolved; link retired")
			return nil
		}
		start := time.Now()
		err := l.session(ctx)
		l.setState(false, err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 30*time.Second {
			backoff = l.cfg.MinBackoff // it was up for a while: start over
		}
		if l.welcomes.Load() != welcomes {
			welcomes, restarting = l.welcomes.Load(), false
		}
		// Full jitter between backoff/2 and backoff.
		wait := backoff/2 + rand.N(backoff/2+1)
		next := min(backoff*2, l.cfg.MaxBackoff)
		code, closed := closedBy(err)
		switch {
		case errors.Is(err, ErrRefused): // the keeper said why
			return err
		case errors.Is(err, errRejoin):
			wait, next = l.cfg.MinBackoff, l.cfg.MinBackoff
			l.log.Warn("identity cleared; joining again", "err", err)
		case errors.Is(err, errRefusedHere):
			// Other controllers still accept the agent (or have not
			// answered yet): this one may be on a wrong database.
			wait, next = l.cfg.RefusedBackoff/2+rand.N(l.cfg.RefusedBackoff/2+1), backoff
			l.log.Warn("this controller refused the agent; keeping the identity the others accept and retrying later", "err", err, "in", wait.Round(time.Millisecond))
		case closed && code == protocol.CloseShutdown:
			// A rolling restart: the controller drained its invocations
			// and said goodbye. Not an error: come back when it may be up
			// again, spread out so that its agents do not all come back in
			// the same instant, then retry at the shortest backoff.
			restarting = true
			wait, next = l.cfg.RestartDelay/5+rand.N(l.cfg.RestartDelay*4/5+1), l.cfg.MinBackoff
			l.log.Info("controller shutting down; reconnecting later", "in", wait.Round(time.Millisecond))
		case closed && code == protocol.CloseSuperseded:
			// Another link of this agent reached the same controller (one
			// controller behind two addresses): stand by while it holds
			// the session.
			l.standby(ctx)
			l.log.Info("another connection of this agent replaced this one; reconnecting", "in", wait.Round(time.Millisecond))
		case restarting:
			l.log.Info("controller not back yet, reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		default:
			l.log.Warn("controller link down, reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		}
		if l.sh.onDown != nil {
			l.sh.onDown(l)
		}
		if !l.sleep(ctx, wait) {
			return ctx.Err()
		}
		backoff = next
	}
}

// sleep waits d, or less if the link is retired; false when ctx ended.
func (l *Link) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-l.wake:
			if l.retiring.Load() {
				return true
			}
		}
	}
}

// closedBy reports the close code of a connection the controller closed,
// when err says so.
func closedBy(err error) (protocol.CloseCode, bool) {
	var app *quic.ApplicationError
	if errors.As(err, &app) && app.Remote {
		return protocol.CloseCode(app.ErrorCode), true
	}
	return 0, false
}

// standby waits, after the controller replaced this link's connection by
// another of this agent's, while another link holds a session with that
// controller. The replacing link may not have had its Welcome yet: it is
// given supersedeGrace to show up.
func (l *Link) standby(ctx context.Context) {
	l.stateMu.Lock()
	id := l.controllerID
	l.stateMu.Unlock()
	if id == "" {
		return
	}
	defer l.setNote("")
	deadline := time.Now().Add(supersedeGrace)
	for {
		other, changed := l.sh.heldBy(id, l)
		var giveUp <-chan time.Time
		if other != nil {
			l.setNote("standby: controller " + id + " is reached through " + other.cfg.Addr)
		} else {
			d := time.Until(deadline)
			if d <= 0 {
				return
			}
			giveUp = time.After(d)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-giveUp:
			return
		case <-l.wake:
			if l.retiring.Load() {
				return
			}
		}
	}
}

// supersedeGrace is how long a link replaced by another of the agent's
// links waits for that link's session to show before reconnecting.
const supersedeGrace = 2 * time.Second

func (l *Link) tlsConfig(pin []byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{protocol.ALPN},
		ServerName:         "wisp-controller",
		InsecureSkipVerify: true, // verified below by pinning the key, no CA involved
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("controller sent no certificate")
			}
			fp := protocol.KeyFingerprint(cs.PeerCertificates[0])
			if subtle.ConstantTimeCompare(fp[:], pin) != 1 {
				return fmt.Errorf("controller key fingerprint %x does not match the pinned one", fp[:8])
			}
			return nil
		},
	}
}

// KeepAlivePeriod and IdleTimeout are the agent's QUIC keep-alive period
// and idle timeout (quicConfig); exported for simulators (internal/simagent)
// that must send the controller what a real agent sends.
//
// They are the link's liveness, both ways: a connection that carried no
// packet for IdleTimeout is closed by either side (the controller's idle
// timeout is longer; QUIC applies the shorter), so a dead or cut-off peer
// is noticed within 6 s. An idle link costs a PING and its ACK every
// KeepAlivePeriod: IdleTimeout/2, the longest quic-go allows, so a lost
// PING is sent again (PTO) before the timeout. Load reports are not
// liveness (heartbeats).
const (
	KeepAlivePeriod = 3 * time.Second
	IdleTimeout     = 6 * time.Second
)

// quicConfig is the agent's QUIC configuration. maxStreams bounds the
// streams the controller may have open at once (concurrent invocations and
// pushes).
func quicConfig(maxStreams int) *quic.Config {
	return &quic.Config{
		KeepAlivePeriod:       KeepAlivePeriod,
		MaxIdleTimeout:        IdleTimeout,
		MaxIncomingStreams:    int64(maxStreams),
		MaxIncomingUniStreams: -1,
	}
}

// session dials, authenticates and serves one connection until it fails.
func (l *Link) session(ctx context.Context) error {
	c, err := l.sh.ids.acquire(ctx, l, func() { l.setNote("waiting for the agent's identity: another link is joining") })
	l.setNote("")
	if err != nil {
		return err
	}
	defer l.sh.ids.release(l)
	if !c.joining && l.token != nil && subtle.ConstantTimeCompare(c.pin, l.token.Fingerprint[:]) != 1 {
		l.log.Warn("join token names another controller key than the one pinned; keeping the pinned one")
	}

	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var conn *quic.Conn
	if l.cfg.PacketConn != nil {
		raddr, rerr := net.ResolveUDPAddr("udp", l.cfg.Addr)
		if rerr != nil {
			return rerr
		}
		conn, err = quic.Dial(dctx, l.cfg.PacketConn, raddr, l.tlsConfig(c.pin), quicConfig(l.cfg.MaxStreams))
	} else {
		conn, err = quic.DialAddr(dctx, l.cfg.Addr, l.tlsConfig(c.pin), quicConfig(l.cfg.MaxStreams))
	}
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	// CloseShutdown tells the controller that every invocation stream this
	// agent accepted was answered (protocol doc: Delivery), so it is sent
	// only after a drain; any other end is a plain close.
	closeCode, closeReason := protocol.CloseNoError, "agent link ended"
	defer func() { conn.CloseWithError(quic.ApplicationErrorCode(closeCode), closeReason) }()

	ctrl, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return fmt.Errorf("control stream: %w", err)
	}
	hello := l.hello(c.id, c.joining)
	if err := protocol.WriteMsg(ctrl, hello); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The agent's stop ends the wait for the Welcome at once.
	unwatch := context.AfterFunc(ctx, func() { conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "agent stopping") })
	msg, err := protocol.ReadMsg(ctrl, maxControlFrame)
	unwatch()
	if err != nil {
		return fmt.Errorf("waiting for welcome: %w", peerClose(conn, err))
	}
	ctrl.SetReadDeadline(time.Time{})
	var welcome *protocol.Welcome
	switch m := msg.(type) {
	case *protocol.Welcome:
		welcome = m
		l.crashesRecorded(hello, m)
	case *protocol.Error:
		if m.Code == protocol.Unauthorized {
			// The keeper decides what a refusal means: wait and retry
			// (other controllers accept the agent), join again, or stop.
			return l.sh.ids.refused(c, l, m)
		}
		return fmt.Errorf("controller answered hello with %w", m)
	default:
		return fmt.Errorf("controller answered hello with %v", msg.Type())
	}
	if c.joining {
		if len(welcome.Credential) == 0 || welcome.AgentID == "" {
			return errors.New("controller welcomed a join without issuing a credential")
		}
		if err := l.sh.ids.joined(c, l, welcome.AgentID, welcome.Credential); err != nil {
			return err
		}
		l.log.Info("joined", "agent", welcome.AgentID)
	} else {
		l.sh.ids.accepted(c, l)
	}
	l.welcomes.Add(1)
	l.stateMu.Lock()
	l.controllerID = welcome.ControllerID
	l.stateMu.Unlock()
	l.sh.hold(welcome.ControllerID, l)
	defer l.sh.letGo(welcome.ControllerID, l)
	l.setState(true, nil)
	l.log.Info("connected", "agent", welcome.AgentID, "controller_id", welcome.ControllerID)

	interval := time.Duration(welcome.HeartbeatIntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = 2 * time.Second
	}
	// Streams are accepted until the session ends, past ctx: while the
	// agent drains, new invocations are refused with Draining (nothing
	// ran, so the controller runs them elsewhere) instead of being left
	// unanswered.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	actx, stopAccepting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAccepting()
	// Every goroutine of the session, stream handlers included, has ended
	// when session returns: closing the connection ends the reads they may
	// block in and the contexts of the invocations still running.
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	// The control loop asks for a full desired set through the heartbeat
	// loop, the stream's only writer.
	resync := make(chan struct{}, 1)
	wg.Go(func() { errc <- l.heartbeats(sctx, ctrl, interval, resync) })
	wg.Go(func() { errc <- l.drainOutbox(sctx, conn) })
	wg.Go(func() { errc <- l.control(sctx, ctrl, resync) })
	wg.Go(func() { errc <- l.acceptStreams(actx, conn, &wg) })
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
		// Lame duck: refuse new invocations, let those in flight send
		// their results, within a bound, then close.
		l.draining.Store(true)
		stop()
		if l.drain(10 * time.Second) {
			closeCode, closeReason = protocol.CloseShutdown, "agent shutting down"
		}
	}
	stop()
	stopAccepting()
	conn.CloseWithError(quic.ApplicationErrorCode(closeCode), closeReason)
	wg.Wait()
	return peerClose(conn, err)
}

// peerClose returns the controller's close of conn, which says why the
// session ended (protocol.CloseCode), in place of err, the read or write
// that found the connection gone; err when the controller did not close it.
func peerClose(conn *quic.Conn, err error) error {
	if _, ok := closedBy(err); ok {
		return err
	}
	select {
	case <-conn.Context().Done():
	default:
		return err
	}
	cause := context.Cause(conn.Context())
	if _, ok := closedBy(cause); ok {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// drain waits for in-flight stream handlers, at most d, and reports
// whether they all finished. Streams still arrive meanwhile (and are
// refused at once), so it polls a count rather than waiting on a group.
func (l *Link) drain(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for l.handlers.Load() > 0 {
		if time.Now().After(deadline) {
			l.log.Warn("shutting down with invocations still running", "in_flight", l.handlers.Load())
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// crashesRecorded marks the crash reports of hello as held by the
// controller when its welcome says it recorded them.
func (l *Link) crashesRecorded(hello *protocol.Hello, w *protocol.Welcome) {
	if len(hello.Crashed) == 0 {
		return
	}
	digests := make([]string, len(hello.Crashed))
	for i, c := range hello.Crashed {
		digests[i] = c.Digest
	}
	if !w.CrashesRecorded {
		l.log.Warn("the controller did not record this agent's crash reports; they stay quarantined here and are sent again", "digests", digests)
		return
	}
	if err := l.cfg.State.CrashesRecorded(digests); err != nil {
		l.log.Error("noting recorded crash reports", "err", err)
		return
	}
	l.log.Info("crash reports recorded by the controller", "digests", digests)
}

func (l *Link) hello(id state.Identity, joining bool) *protocol.Hello {
	total, avail := memInfo()
	rt := l.cfg.Executor.Runtime()
	h := &protocol.Hello{
		Name:            l.cfg.Name,
		OS:              goruntime.GOOS,
		Arch:            goruntime.GOARCH,
		Engine:          rt.Engine(),
		Labels:          l.cfg.Labels,
		MemTotalBytes:   total,
		MemAvailBytes:   avail,
		CPUs:            uint64(goruntime.NumCPU()),
		Inflight:        uint64(l.cfg.Executor.InFlight()),
		Digests:         l.cfg.Executor.Digests(),
		AgentVersion:    version.Version,
		ProtocolVersion: protocol.Version,
		Crashed:         l.cfg.State.UnreportedCrashes(),
	}
	if joining {
		h.JoinSecret = l.token.Secret
	} else {
		h.AgentID, h.Credential = id.AgentID, id.Credential
	}
	return h
}

// loadCheck is how often the agent looks at its load between two load
// reports.
const loadCheck = 2 * time.Second

// heartbeats sends load reports (Heartbeat frames) on the control stream:
// at least every `every` (the welcome's heartbeat interval), and sooner,
// at the next loadCheck, when the available memory moved enough for the
// controller's scheduling to care (loadChanged). A controller that asks
// for reports every 2 s (before issue 15) gets one every 2 s. Liveness is
// QUIC's keep-alives (KeepAlivePeriod), not these. A report goes at once,
// with DesiredResync, when resync ticks: a desired-set delta did not
// apply, and the controller is asked for its full set.
func (l *Link) heartbeats(ctx context.Context, ctrl *quic.Stream, every time.Duration, resync <-chan struct{}) error {
	check := min(every, loadCheck)
	t := time.NewTicker(check)
	defer t.Stop()
	var sent time.Time // zero until the first report, due at the first check
	var reported uint64
	asked := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-resync:
			asked = true
		}
		total, avail := memInfo()
		if !asked && !reportDue(sent.IsZero(), time.Since(sent), every, check, total, reported, avail) {
			continue
		}
		hb := &protocol.Heartbeat{
			MemAvailBytes:    avail,
			Inflight:         uint64(l.cfg.Executor.InFlight()),
			InvocationsTotal: l.cfg.Executor.Total(),
			SentUnixMS:       uint64(time.Now().UnixMilli()),
			DesiredResync:    asked,
		}
		asked = false
		if err := protocol.WriteMsg(ctrl, hb); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		sent, reported = time.Now(), avail
	}
}

// reportDue decides, at a check every `check`, whether a load report goes
// out: the first one, one whose interval is up (within half a check), or
// one whose available memory moved from the last report's (was) to now by
// a sixteenth of the total or 64 MiB, whichever is less (64 MiB on a 1 GiB
// board, 16 MiB on a 256 MiB one).
func reportDue(first bool, since, every, check time.Duration, total, was, now uint64) bool {
	return first || since >= every-check/2 || max(was, now)-min(was, now) >= min(total/16, 64<<20)
}

// control reads what the controller sends on the control stream.
func (l *Link) control(ctx context.Context, ctrl *quic.Stream, resync chan<- struct{}) error {
	for {
		msg, err := protocol.ReadMsg(ctrl, maxControlFrame)
		if err != nil {
			return fmt.Errorf("control stream: %w", err)
		}
		switch m := msg.(type) {
		case *protocol.DesiredSet:
			l.storeDesired(m)
		case *protocol.DesiredDelta:
			if !l.applyDesired(m) {
				select {
				case resync <- struct{}{}:
				default: // asked already
				}
			}
		case *protocol.Drop:
			l.drop(m.Digests)
		case *protocol.Quarantine:
			released, err := l.cfg.State.SetQuarantine(m.Entries)
			if err != nil {
				l.log.Error("storing the quarantine", "err", err)
				continue
			}
			l.log.Info("quarantine updated", "quarantined", len(m.Entries), "released", released)
		case *protocol.Unknown:
			l.log.Debug("skipping unknown control message", "type", m.Type())
		default:
			l.log.Warn("unexpected control message", "type", msg.Type())
		}
	}
}

// storeDesired stores a full desired set unless it is the one stored.
// Every controller sends the set it computes from the one store: the same
// set again from another is not news. A set is known by its digest, or,
// from a controller that sends none (before version 5), by the hash of
// its encoding.
func (l *Link) storeDesired(m *protocol.DesiredSet) {
	sum := m.Digest
	if sum == (protocol.SetDigest{}) {
		sum = sha256.Sum256(m.Append(nil))
	}
	l.sh.desiredMu.Lock()
	defer l.sh.desiredMu.Unlock()
	if l.sh.desired == sum {
		l.log.Debug("desired set unchanged", "functions", len(m.Functions))
		return
	}
	stored := *m
	if stored.Digest != sum {
		stored.Digest = protocol.SetDigest{} // no delta applies to it
	}
	if err := l.cfg.State.SetDesiredSet(&stored); err != nil {
		l.log.Error("storing the desired set", "err", err)
		return
	}
	l.sh.desired = sum
	l.log.Info("desired set updated", "functions", len(m.Functions))
	l.desiredChanged(m.Functions, true)
}

// applyDesired applies a delta to the stored desired set, and reports
// false when it was made for another set: the controller must send its
// full set. A delta whose result is the set stored (another controller
// sent the same change first) is not news.
//
// Why a delta never applies to the wrong set: the agent keeps the digest
// of its stored set in the same transaction as the set, and applies a
// delta only when that digest is the delta's base (state.ApplyDesired);
// a controller names a set by the digest of exactly the functions it
// sent (controller/fleet).
func (l *Link) applyDesired(m *protocol.DesiredDelta) bool {
	l.sh.desiredMu.Lock()
	defer l.sh.desiredMu.Unlock()
	if l.sh.desired == m.Result {
		l.log.Debug("desired set unchanged", "upserts", len(m.Upserts), "removes", len(m.Removes))
		return true
	}
	triggers, err := l.cfg.State.ApplyDesired(m)
	if errors.Is(err, state.ErrDesiredBase) {
		l.log.Info("a desired-set delta for another set; asking for the full set", "upserts", len(m.Upserts), "removes", len(m.Removes))
		return false
	}
	if err != nil {
		l.log.Error("storing a desired-set delta; asking for the full set", "err", err)
		return false
	}
	l.sh.desired = m.Result
	l.log.Info("desired set changed", "upserts", len(m.Upserts), "removes", len(m.Removes))
	l.desiredChanged(m.Upserts, triggers)
	return true
}

// desiredChanged follows a stored change of the desired set: code a Drop
// named while the set still did may go now, and OnDesired is told.
func (l *Link) desiredChanged(fs []protocol.DesiredFunction, triggers bool) {
	if len(l.kept) > 0 {
		l.drop(slices.Collect(maps.Keys(l.kept)))
	}
	if l.cfg.OnDesired != nil {
		l.cfg.OnDesired(fs, triggers)
	}
}

// Kick wakes the outbox drain: new entries are waiting.
func (l *Link) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// outboxBatch bounds the activations sent in one OutboxBatch;
// outboxBatchBytes bounds their outputs, messages and log texts together,
// well within protocol.MaxFrameSize. A batch also carries at most
// protocol.MaxLogLines log lines (see batchPrefix).
const (
	outboxBatch      = 500
	outboxBatchBytes = 16 << 20
)

// batchPrefix returns the longest prefix of entries that fits one batch:
// at most outboxBatchBytes of outputs, messages and log texts (roughly the
// encoded size) and protocol.MaxLogLines log lines, and never less than
// one entry (an agent keeps one activation far within both).
func batchPrefix(entries []protocol.OutboxEntry) []protocol.OutboxEntry {
	size, lines := 0, 0
	for i := range entries {
		e := &entries[i]
		n := len(e.Output) + len(e.Message) + 256
		for _, l := range e.Logs {
			n += len(l.Text) + 16
		}
		size, lines = size+n, lines+len(e.Logs)
		if i > 0 && (size > outboxBatchBytes || lines > protocol.MaxLogLines) {
			return entries[:i]
		}
	}
	return entries
}

// drainOutbox streams the outbox to the controller while connected: a batch
// at a time on a stream of its own, deleting entries only once the
// controller acknowledged them. A crash at any point leaves unacknowledged
// entries in place to be sent again; the controller drops ids it already
// has, so a replay never duplicates.
//
// One link drains at a time, agent-wide (the outbox slot of shared): two
// controllers never record and acknowledge the same batch at once. The
// link holds the slot until its session ends; another link then takes it.
func (l *Link) drainOutbox(ctx context.Context, conn *quic.Conn) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case l.sh.outbox <- struct{}{}:
	}
	l.drainsOutbox.Store(true)
	defer func() {
		l.drainsOutbox.Store(false)
		<-l.sh.outbox
	}()
	for {
		entries, err := l.cfg.State.Outbox(outboxBatch)
		if err != nil {
			return fmt.Errorf("reading the outbox: %w", err)
		}
		if len(entries) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-l.kick:
			case <-time.After(time.Second):
			}
			continue
		}
		if err := l.sendBatch(ctx, conn, batchPrefix(entries)); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
	}
}

func (l *Link) sendBatch(ctx context.Context, conn *quic.Conn, entries []protocol.OutboxEntry) error {
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer s.CancelRead(0)
	defer s.Close()
	if err := protocol.WriteMsg(s, &protocol.OutboxBatch{Entries: entries}); err != nil {
		return err
	}
	s.SetReadDeadline(time.Now().Add(60 * time.Second))
	msg, err := protocol.ReadMsg(s, maxControlFrame*16)
	if err != nil {
		return err
	}
	switch m := msg.(type) {
	case *protocol.OutboxAck:
		if err := l.cfg.State.AckOutbox(m.IDs...); err != nil {
			return fmt.Errorf("deleting acknowledged entries: %w", err)
		}
		l.log.Debug("outbox batch acknowledged", "entries", len(m.IDs))
		return nil
	case *protocol.Error:
		return m
	}
	return fmt.Errorf("controller answered OutboxBatch with %v", msg.Type())
}

// acceptStreams serves the streams the controller opens, each on a worker
// goroutine counted in wg (and in l.handlers while it serves, which drain
// polls). A stream goes to a worker that is idle when there is one, and to
// a new worker otherwise, so there are never more workers than streams
// served at once, and a worker idle for streamWorkerIdle ends. Reusing
// workers is for their stacks: an invocation needs tens of KiB of stack,
// which a new goroutine grows from a few KiB, copying it each time, on
// every invocation (6–7 % of the agent's CPU under load, issue 16).
func (l *Link) acceptStreams(ctx context.Context, conn *quic.Conn, wg *sync.WaitGroup) error {
	work := make(chan *quic.Stream) // unbuffered: a send succeeds only to an idle worker
	defer close(work)
	for {
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return fmt.Errorf("accepting streams: %w", err)
		}
		l.handlers.Add(1)
		select {
		case work <- s:
		default:
			wg.Go(func() { l.streamWorker(s, work) })
		}
	}
}

// streamWorkerIdle is how long a stream worker waits for another stream
// before it ends.
const streamWorkerIdle = 2 * time.Second

// streamWorker serves s, then the streams it receives from work until work
// closes (the session ends) or none came for streamWorkerIdle.
func (l *Link) streamWorker(s *quic.Stream, work <-chan *quic.Stream) {
	serve := func(s *quic.Stream) {
		defer l.handlers.Add(-1)
		// The stream's context ends when the controller cancels the
		// invocation or the connection dies, not when the agent starts
		// shutting down: in-flight work drains.
		l.serveStream(s.Context(), s)
	}
	serve(s)
	idle := time.NewTimer(streamWorkerIdle)
	defer idle.Stop()
	served := false // since the timer last fired: one Reset per period, not per stream
	for {
		select {
		case s, ok := <-work:
			if !ok {
				return
			}
			serve(s)
			served = true
		case <-idle.C:
			if !served {
				return
			}
			served = false
			idle.Reset(streamWorkerIdle)
		}
	}
}

// serveStream handles one controller-opened stream.
func (l *Link) serveStream(ctx context.Context, s *quic.Stream) {
	// Both directions must end for QUIC to count the stream as closed and
	// grant the controller a new one. Forgetting the read side leaks one
	// stream credit per invocation until the connection stalls. Waiting
	// for the controller's FIN (it ends its side once it read the answer)
	// keeps the stream in flight until then, so a drain never closes the
	// connection, which drops undelivered stream data, under an answer.
	defer quicstream.FinishWait(s)
	msg, err := protocol.ReadMsg(s, protocol.MaxFrameSize)
	if err != nil {
		s.CancelRead(0)
		return
	}
	switch m := msg.(type) {
	case *protocol.Invoke:
		if l.draining.Load() {
			res := &protocol.Result{ActivationID: m.ActivationID, Code: protocol.Draining, Message: "the agent is shutting down"}
			if err := protocol.WriteMsg(s, res); err != nil {
				l.log.Warn("refusing an invocation while draining", "activation", m.ActivationID, "err", err)
			}
			return
		}
		ack := &startAck{s: s, id: m.ActivationID}
		ack.mu.Lock() // the timer's send waits until ack.timer is set
		delay := startAckDelay
		if d := fault.StartedDelay(); d > 0 {
			ack.notBefore, delay = time.Now().Add(d), d
		}
		ack.timer = time.AfterFunc(delay, func() { ack.send(nil) })
		ack.mu.Unlock()
		res := l.invoke(ctx, s, m, ack)
		if err := ack.send(res); err != nil {
			l.log.Warn("sending result", "activation", m.ActivationID, "err", err)
		}
	case *protocol.Code:
		var reply protocol.Message = &protocol.Ack{ID: m.Digest}
		if err := l.cfg.Executor.Store(ctx, m.Digest, m.Wasm); err != nil {
			reply = &protocol.Error{Code: executor.WireCode(err), Message: err.Error()}
		}
		protocol.WriteMsg(s, reply)
	case *protocol.Ping:
		protocol.WriteMsg(s, &protocol.Pong{Nonce: m.Nonce, Payload: m.Payload})
	default:
		protocol.WriteMsg(s, &protocol.Error{Code: protocol.BadRequest, Message: fmt.Sprintf("unexpected %v on a new stream", msg.Type())})
	}
}

// drop forgets code the controller no longer needs, except what the
// stored desired set still names (a function's code or a kept version's):
// a Drop that crossed a newer desired set must not cost a rollback its
// code.
func (l *Link) drop(digests []string) {
	needed, err := l.cfg.State.Needed(digests)
	if err != nil {
		l.log.Error("reading the desired set before a drop; keeping the code", "err", err)
		return
	}
	if l.kept == nil {
		l.kept = map[string]bool{}
	}
	for _, d := range digests {
		delete(l.kept, d)
	}
	if len(needed) > 0 {
		l.log.Info("keeping code the desired set names", "digests", needed)
		for _, d := range needed {
			l.kept[d] = true
		}
		digests = slices.DeleteFunc(slices.Clone(digests), func(d string) bool { return l.kept[d] })
	}
	if len(digests) == 0 {
		return
	}
	if err := l.cfg.Executor.Drop(digests...); err != nil {
		l.log.Error("dropping code", "err", err)
	}
}

// startAckDelay is how long the agent may hold back Started hoping to send
// it in the same packet as the Result: most invocations finish well within
// it, which saves a packet and a wake-up on both sides. It is far below the
// controller's start timeout (2s by default).
const startAckDelay = 5 * time.Millisecond

// startAck sends protocol.Started exactly once, before anything else on the
// stream: on its own when startAckDelay passes or code must be fetched, or
// together with the Result.
type startAck struct {
	s     *quic.Stream
	id    string
	timer *time.Timer
	mu    sync.Mutex
	sent  bool
	err   error
	// notBefore holds the first frame back (the delay-started test fault;
	// zero in release builds).
	notBefore time.Time
}

// send writes Started if it has not been written, followed by next (if any),
// in one write.
func (a *startAck) send(next protocol.Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	var buf []byte
	if !a.sent {
		a.timer.Stop()
		if d := time.Until(a.notBefore); d > 0 {
			time.Sleep(d)
		}
		buf, _ = protocol.AppendMsg(nil, &protocol.Started{ActivationID: a.id})
		a.sent = true
	}
	if next != nil {
		var err error
		if buf, err = protocol.AppendMsg(buf, next); err != nil {
			return err
		}
	}
	if len(buf) > 0 {
		_, a.err = a.s.Write(buf)
	}
	return a.err
}

func (l *Link) invoke(ctx context.Context, s *quic.Stream, m *protocol.Invoke, ack *startAck) *protocol.Result {
	if m.DeadlineUnixMS != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(int64(m.DeadlineUnixMS)))
		defer cancel()
	}
	fetch := func(ctx context.Context, digest string) ([]byte, error) {
		if err := ack.send(&protocol.NeedCode{Digest: digest}); err != nil {
			return nil, err
		}
		msg, err := protocol.ReadMsg(s, protocol.MaxFrameSize)
		if err != nil {
			return nil, err
		}
		switch c := msg.(type) {
		case *protocol.Code:
			if c.Digest != digest {
				return nil, fmt.Errorf("asked for %s, got %s", digest, c.Digest)
			}
			return c.Wasm, nil
		case *protocol.Error:
			return nil, c
		}
		return nil, fmt.Errorf("expected code, got %v", msg.Type())
	}
	out := l.cfg.Executor.Invoke(ctx, executor.Call{
		ActivationID: m.ActivationID,
		Module:       m.Module,
		Function:     m.Function,
		Digest:       m.Digest,
		Args:         m.Args,
		AllowedHosts: m.AllowedHosts,
		Env:          m.Env,
		Limits: runtime.Limits{
			Timeout:     time.Duration(m.TimeoutMS) * time.Millisecond,
			MemoryBytes: m.MemoryLimitBytes,
		},
	}, fetch)
	res := &protocol.Result{
		ActivationID:  m.ActivationID,
		Output:        out.Output,
		Logs:          out.Logs,
		TraceParent:   m.TraceParent,
		QueueUS:       uint64(out.Queue.Microseconds()),
		TransferUS:    uint64(out.Transfer.Microseconds()),
		CompileUS:     uint64(out.Compile.Microseconds()),
		InstantiateUS: uint64(out.Instantiate.Microseconds()),
		RunUS:         uint64(out.Run.Microseconds()),
		Compiled:      out.Compiled,
		DiskCacheHit:  out.DiskCacheHit,
	}
	if out.Err != nil {
		res.Code, res.Message = executor.WireCode(out.Err), out.Err.Error()
		var rerr *runtime.Error
		if errors.As(out.Err, &rerr) {
			res.Message = rerr.Msg
			res.ExitCode = rerr.ExitCode
		}
	}
	return res
}

// CertFingerprint is a helper for tests and tools: the pin of a DER certificate.
func CertFingerprint(der []byte) ([32]byte, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(c.RawSubjectPublicKeyInfo), nil
}
