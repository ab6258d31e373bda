package fleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/quicstream"
	"github.com/wispfn/wisp/internal/tasks"
	"github.com/wispfn/wisp/protocol"
)

// Store is what the fleet needs from the controller's store.
type Store interface {
	CreateJoinToken(ctx context.Context, jt store.JoinToken) (store.JoinToken, error)
	JoinAgent(ctx context.Context, hash []byte, a store.Agent) (store.Agent, error)
	AgentByID(ctx context.Context, id string) (store.Agent, error)
	TouchAgent(ctx context.Context, id, name string, labels []string, seen time.Time) error
	ListAgents(ctx context.Context) ([]store.Agent, error)
	SetAgentControl(ctx context.Context, id string, c store.AgentControl) (store.Agent, error)
	DeleteAgent(ctx context.Context, id string) error
	Code(ctx context.Context, digest string) ([]byte, error)
	ListFunctions(ctx context.Context) ([]store.Function, error)
	ListScripts(ctx context.Context) ([]store.Script, error)
	QuarantineDigest(ctx context.Context, q store.Quarantine) (bool, error)
	ListQuarantine(ctx context.Context) ([]store.Quarantine, error)
	ReleaseDigest(ctx context.Context, digest string) (store.Quarantine, error)
}

// FunctionLister lists every function.
type FunctionLister interface {
	ListFunctions(ctx context.Context) ([]store.Function, error)
}

// Config configures a Fleet.
type Config struct {
	Identity Identity
	Store    Store
	// Functions, when set, lists the functions for the desired sets
	// instead of Store: the controller passes its store.Cached, which
	// answers from memory what did not change.
	Functions FunctionLister
	// ControllerID names this controller to agents (logs only).
	ControllerID string
	// HeartbeatInterval is the longest time between two load reports
	// (Heartbeat frames) agents are told to keep; default 30s. Agents
	// report sooner when their load changes (agent/link). Liveness is the
	// QUIC connection's: a dead or cut-off agent is noticed by the idle
	// timeout (IdleTimeout, and the agent's own, which is shorter). An
	// agent whose connection stays up but that sends no frame for
	// MissedHeartbeats intervals (default 3) is disconnected: its process
	// answers QUIC but not the protocol.
	HeartbeatInterval time.Duration
	MissedHeartbeats  int
	// IdleTimeout closes a connection that received no packet for that
	// long; default 8s. The agents' keep-alives (agent/link) keep a live
	// one busy, and their idle timeout (6s) is the one QUIC applies when
	// shorter.
	IdleTimeout time.Duration
	// StartTimeout is how long an agent has to acknowledge an Invoke
	// (protocol.Started); default 2s. An agent that does not is left out of
	// scheduling until its next heartbeat and probed with a Ping; the
	// invocation keeps waiting for its Result (it may be running), unless
	// the function is idempotent and the agent answers the Ping: it is then
	// cancelled there and run elsewhere.
	StartTimeout time.Duration
	// CrashHold is how long a digest is held (its invocations refused)
	// after an agent went silent while running it, unless the agent
	// reconnects sooner; default 30s, negative disables holds.
	CrashHold time.Duration
	// QuarantineRefresh is how often the quarantine is re-read from the
	// store (other controllers on the same database change it too);
	// default 5s.
	QuarantineRefresh time.Duration
	// AgentRefresh is how often the agents' records are re-read from the
	// store, for what other controllers changed (control.go); default 5s;
	// negative: never (a controller following the store's change feed
	// calls RefreshAgents instead, controller/cluster.Follower).
	AgentRefresh time.Duration
	Metrics      *Metrics
	Logger       *slog.Logger
	// Outbox records the activations agents replay from their outboxes;
	// nil refuses them (agents keep them and retry).
	Outbox OutboxRecorder
	// DefaultAllowHosts is the egress allowlist of the functions whose
	// config sets no allow_hosts (patterns of fnspec.CheckHostPattern);
	// empty denies every host.
	DefaultAllowHosts []string
	// DrainTimeout bounds how long Serve, once its context ends, waits for
	// the invocations this controller runs on agents before it closes
	// their sessions (shutdown.go); default 10s.
	DrainTimeout time.Duration
	// Secrets opens the values of the secrets functions' configs name,
	// for dispatches (Invoke.Env) and desired sets
	// (DesiredFunction.Secrets); nil: a function whose config names a
	// secret fails to dispatch and reaches agents without its values.
	Secrets SecretValues
	// Cluster is this controller's membership of its cluster
	// (controller/cluster.Member): sessions are reported to it as they
	// come and go, and Agents lists the cluster's agents through it. nil:
	// Agents lists this controller's own sessions.
	Cluster Cluster
}

// Cluster is what the fleet needs of its controller's cluster membership.
type Cluster interface {
	// AgentUp and AgentDown report a session with an agent (its link:
	// Since names the session) as it comes and goes; they never block.
	AgentUp(store.AgentLink)
	AgentDown(store.AgentLink)
	// ClusterAgents is every stored agent with its links to the live
	// controllers.
	ClusterAgents(ctx context.Context) ([]store.ClusterAgent, error)
}

// DefaultHeartbeatInterval and DefaultIdleTimeout are Config's defaults.
const (
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultIdleTimeout       = 8 * time.Second
)

// Errors of Invoke and Push.
var (
	// ErrNotStarted: the invocation provably never reached the agent's
	// runtime (no stream, the Invoke frame could not be written, or the
	// agent closed after draining without taking it); it is safe to run
	// elsewhere.
	ErrNotStarted = errors.New("invocation did not start on the agent")
	// ErrAgentLost: the agent went away, or dropped the stream, after the
	// Invoke reached it: the function may have run.
	ErrAgentLost = errors.New("agent lost during the invocation")
	// ErrDisconnected: the session is not connected.
	ErrDisconnected = errors.New("agent disconnected")
	// ErrSlowStart: an idempotent invocation was cancelled on an agent that
	// answers Pings but did not start it within the start timeout, to run
	// elsewhere. It may have run there too.
	ErrSlowStart = errors.New("agent did not start the invocation in time")
)

// Fleet holds the agents' sessions. Safe for concurrent use.
type Fleet struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	sessions map[string]*Session // by agent id, connected or not
	// removed holds the ids of agents removed while this controller ran,
	// so one authenticated just before its removal is refused (control.go).
	removed map[string]struct{}
	// index is the connected sessions in the scheduler's order, read
	// without locking by every decision (index.go).
	index schedIndex

	quarantine quarantineState

	// catalog is every function's desired form and its recent changes,
	// brought up to date by each read of the desired sets' inputs, which
	// take turns (catalogMu; desired_catalog.go).
	catalogMu sync.Mutex
	catalog   desiredCatalog
	// desiredGen numbers the reads of desired sets (desiredInputs.gen);
	// desiredEpoch counts SyncDesired calls, and shared is the read that
	// connecting sessions share until the next (desired.go).
	desiredGen   atomic.Uint64
	desiredEpoch atomic.Uint64
	shared       struct {
		mu    sync.Mutex
		in    *desiredInputs
		epoch uint64
		at    time.Time
	}
	// tags are the cluster's agents' tags, for assignment (desired.go).
	tags agentTags
	// shutting: Serve's context ended; it drains (shutdown.go).
	shutting atomic.Bool

	// bg owns the goroutines that outlive the call that started them
	// (desired-set syncs, late-start probes); Serve stops it last.
	bg *tasks.Group
}

// New returns a Fleet; it does no I/O.
func New(cfg Config) (*Fleet, error) {
	if cfg.Store == nil {
		return nil, errors.New("fleet: a store is required")
	}
	if len(cfg.Identity.Cert.Certificate) == 0 {
		return nil, errors.New("fleet: an identity is required")
	}
	if cfg.Functions == nil {
		cfg.Functions = cfg.Store
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = 3
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Second
	}
	if cfg.CrashHold == 0 {
		cfg.CrashHold = 30 * time.Second
	}
	if cfg.QuarantineRefresh <= 0 {
		cfg.QuarantineRefresh = 5 * time.Second
	}
	if cfg.AgentRefresh <= 0 {
		cfg.AgentRefresh = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, log: cfg.Logger, sessions: map[string]*Session{}, removed: map[string]struct{}{}, bg: tasks.New(context.Background())}
	f.index.init(f.current, f.later)
	f.quarantine.init()
	return f, nil
}

// Session is one agent, connected or not.
type Session struct {
	ID    string
	hello protocol.Hello // immutable after connect (digests tracked below)
	// version is the protocol version agreed with the agent.
	version uint64
	f       *Fleet
	conn    *quic.Conn
	ctrl    *quic.Stream
	ctrlMu  sync.Mutex

	// connectedAt is when the session was made (unix ns).
	connectedAt int64
	connected   atomic.Bool
	// cordoned, labels and memCap follow the agent's stored record
	// (control.go): out of scheduling, the effective labels, and the most
	// memory the scheduler believes (0: no bound).
	cordoned atomic.Bool
	labels   atomic.Pointer[[]string]
	memCap   atomic.Uint64
	// lastSeen is when the agent last sent a frame (unix ns): a load
	// report, an outbox batch, or any frame on an invocation stream.
	lastSeen atomic.Int64
	// suspect is when the agent last failed to acknowledge an Invoke (unix
	// ns); it is not scheduled until it is heard from again (lastSeen).
	suspect  atomic.Int64
	memAvail atomic.Uint64
	memKnown atomic.Bool
	inflight atomic.Int64
	total    atomic.Uint64

	// syncMu orders the desired sets and deltas sent to the session;
	// desiredGen is the read its last one was made from. desiredSent: a
	// full set was sent on this session (a new connection is a new
	// Session: it gets its full set); sentDigest names the agent's set as
	// this session made it, sentCat the catalog generation it is at, and
	// sentAssign the assignment inputs it was made with (desired.go,
	// desired_catalog.go). pushing holds the digests a sync is pushing,
	// unpushed the functions whose push failed (pushed again at the next
	// sync). resyncPending and lastResync space the agent's requests for
	// its full set.
	syncMu        sync.Mutex
	desiredGen    uint64
	desiredSent   bool
	sentDigest    protocol.SetDigest
	sentCat       uint64
	sentAssign    [sha256.Size]byte
	pushing       map[string]struct{}
	unpushed      map[string]store.Function
	resyncPending atomic.Bool
	lastResync    atomic.Int64

	// digests is the set of code the agent holds, copied on write (rare:
	// pushes, pulls, drops) so the scheduler reads it without locking.
	digestMu sync.Mutex
	digests  atomic.Pointer[digestSet]

	// idxAvail and idxKnown are the memory the scheduling index holds for
	// the session; idxDirty marks it for re-indexing (under index.mu).
	idxAvail atomic.Uint64
	idxKnown atomic.Bool
	idxDirty bool
	// quiet closes the session when the agent sends no frame for
	// MissedHeartbeats load-report intervals (watchQuiet).
	quiet *time.Timer
}

// AgentInfo is what GET /v1/agents shows of an agent.
type AgentInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Connected: some live controller of the cluster has a session with
	// it; Controllers are their instance ids, sorted.
	Connected   bool     `json:"connected"`
	Controllers []string `json:"controllers"`
	// OS, Arch, Engine, Version, CPUs and MemTotalBytes are what it said
	// in its hello (to this controller, or to one it is connected to);
	// empty when it is connected to none and this controller has not seen
	// it since it started. MemAvailBytes, InFlight and Digests are this
	// controller's view (0 without a session here).
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	Engine string `json:"engine"`
	// Labels are the effective labels: the agent's own, overridden by
	// the operator's (ControlState.Labels).
	Labels        []string `json:"labels"`
	Cordoned      bool     `json:"cordoned"`
	CPUs          uint64   `json:"cpus"`
	MemTotalBytes uint64   `json:"mem_total_bytes"`
	MemAvailBytes uint64   `json:"mem_avail_bytes"`
	// MemBoundBytes is the most memory the scheduler believes the agent
	// has (what it reported at join, or the operator's cap); 0: no bound.
	MemBoundBytes uint64    `json:"mem_bound_bytes"`
	InFlight      int64     `json:"in_flight"`
	Digests       int       `json:"digests"`
	Version       string    `json:"version"`
	LastSeen      time.Time `json:"last_seen"`
}

// info is what this controller's session shows of its agent; self is
// this controller's id, its one controller while it is connected.
func (s *Session) info(self string) AgentInfo {
	n := len(*s.digests.Load())
	controllers := []string{}
	if s.connected.Load() && self != "" {
		controllers = append(controllers, self)
	}
	return AgentInfo{
		ID: s.ID, Name: s.hello.Name, Connected: s.connected.Load(), Controllers: controllers, OS: s.hello.OS, Arch: s.hello.Arch,
		Engine: s.hello.Engine, Labels: append([]string{}, s.Labels()...), Cordoned: s.cordoned.Load(), CPUs: s.hello.CPUs,
		MemTotalBytes: s.hello.MemTotalBytes, MemAvailBytes: s.memAvail.Load(), MemBoundBytes: s.memCap.Load(), InFlight: s.inflight.Load(),
		Digests: n, Version: s.hello.AgentVersion, LastSeen: time.Unix(0, s.lastSeen.Load()).UTC(),
	}
}

// digestSet is the code an agent holds. Its digests are interned
// (unique.Handle): thousands of agents holding the same functions share
// one copy of each digest's text, and a set costs 8 bytes and a map slot
// per digest.
type digestSet map[unique.Handle[string]]struct{}

// newDigestSet is the set of ds.
func newDigestSet(ds ...string) *digestSet {
	m := make(digestSet, len(ds))
	for _, d := range ds {
		m[unique.Make(d)] = struct{}{}
	}
	return &m
}

// HasDigest reports whether the agent holds the code.
func (s *Session) HasDigest(d string) bool { return s.holds(unique.Make(d)) }

// holds is HasDigest for an interned digest (a decision interns it once).
func (s *Session) holds(d unique.Handle[string]) bool {
	_, ok := (*s.digests.Load())[d]
	return ok
}

// updateDigests applies change to a copy of the digest set and publishes it.
func (s *Session) updateDigests(change func(digestSet)) {
	s.digestMu.Lock()
	defer s.digestMu.Unlock()
	old := *s.digests.Load()
	m := make(digestSet, len(old)+1)
	for k := range old {
		m[k] = struct{}{}
	}
	change(m)
	s.digests.Store(&m)
}

func (s *Session) addDigest(d string) {
	h := unique.Make(d)
	if s.holds(h) {
		return
	}
	s.updateDigests(func(m digestSet) { m[h] = struct{}{} })
}

// Agents lists the agents of the cluster, connected first, then by name
// and id: every agent in the store, with the controllers it has sessions
// with, from one store read (Config.Cluster); without a cluster, the
// agents this controller has seen since it started. What this controller
// knows from its own session with an agent (its load, its code, its
// calls in flight) is shown when it has one.
func (f *Fleet) Agents(ctx context.Context) ([]AgentInfo, error) {
	f.mu.RLock()
	local := make(map[string]*Session, len(f.sessions))
	for id, s := range f.sessions {
		local[id] = s
	}
	f.mu.RUnlock()
	var out []AgentInfo
	if f.cfg.Cluster == nil {
		out = make([]AgentInfo, 0, len(local))
		for _, s := range local {
			out = append(out, s.info(f.cfg.ControllerID))
		}
	} else {
		cas, err := f.cfg.Cluster.ClusterAgents(ctx)
		if err != nil {
			return nil, fmt.Errorf("fleet: list the cluster's agents: %w", err)
		}
		out = make([]AgentInfo, 0, len(cas))
		for _, ca := range cas {
			out = append(out, f.clusterInfo(ca, local[ca.ID]))
		}
	}
	slices.SortFunc(out, func(a, b AgentInfo) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// clusterInfo is what GET /v1/agents shows of a stored agent: its record
// and links, with this controller's session s (nil: none) for what only
// a session knows.
func (f *Fleet) clusterInfo(ca store.ClusterAgent, s *Session) AgentInfo {
	var info AgentInfo
	if s != nil {
		info = s.info(f.cfg.ControllerID)
	} else {
		info = AgentInfo{ID: ca.ID, Controllers: []string{}, Labels: effectiveLabels(ca.Labels, ca.Control.Labels), LastSeen: ca.LastSeen}
		if len(ca.Links) > 0 {
			l := ca.Links[0]
			info.OS, info.Arch, info.Engine, info.Version = l.OS, l.Arch, l.Engine, l.Version
			info.CPUs, info.MemTotalBytes = l.CPUs, l.MemTotalBytes
		}
	}
	info.Name = ca.Name
	info.Cordoned = ca.Control.Cordoned
	info.MemBoundBytes = memBound(ca.Agent)
	if ca.LastSeen.After(info.LastSeen) {
		info.LastSeen = ca.LastSeen
	}
	for _, l := range ca.Links {
		if !slices.Contains(info.Controllers, l.Controller) {
			info.Controllers = append(info.Controllers, l.Controller)
		}
	}
	slices.Sort(info.Controllers)
	info.Connected = len(info.Controllers) > 0
	return info
}

// Connected counts connected agents.
func (f *Fleet) Connected() int {
	n := 0
	f.mu.RLock()
	for _, s := range f.sessions {
		if s.connected.Load() {
			n++
		}
	}
	f.mu.RUnlock()
	return n
}

// current reports whether s is its agent's current session (for the
// index: a session superseded by a reconnection leaves it).
func (f *Fleet) current(s *Session) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.sessions[s.ID] == s
}

// later runs fn after indexDelay, unless the fleet has stopped.
func (f *Fleet) later(fn func()) {
	time.AfterFunc(indexDelay, func() {
		if done, ok := f.bg.Enter(); ok {
			defer done()
			fn()
		}
	})
}

// candidateBuf holds the slices of one scheduling decision under an APP
// script; pooled, since with thousands of agents they are the decision's
// only allocations.
type candidateBuf struct {
	ss []*Session
	cs []scheduler.Candidate
}

var candidateBufs = sync.Pool{New: func() any { return new(candidateBuf) }}

// candidates fills buf with the schedulable sessions and their scheduler
// view, for APP scripts (the default policy reads the index: pickDefault).
// It takes no lock: a decision under a script costs O(agents) reads.
func (f *Fleet) candidates(digest string, exclude []*Session, buf *candidateBuf) {
	held := unique.Make(digest)
	buf.ss, buf.cs = buf.ss[:0], buf.cs[:0]
	for _, e := range f.index.entries() {
		s := e.s
		if !s.schedulable(exclude) {
			continue
		}
		total, avail := s.schedulerMemory()
		buf.ss = append(buf.ss, s)
		buf.cs = append(buf.cs, scheduler.Candidate{
			ID: s.ID, Name: s.hello.Name, Labels: s.Labels(),
			MemTotal: total, MemAvail: avail, MemKnown: s.memKnown.Load(),
			InFlight: int(s.inflight.Load()), HasDigest: s.holds(held),
		})
	}
}

// Serve accepts agents on pc until ctx is done, then drains: it stops
// accepting agents, lets the invocations it runs on agents return (at most
// DrainTimeout; new ones are refused meanwhile) and closes every session
// with CloseShutdown (shutdown.go). It returns once every goroutine the
// fleet started has ended.
func (f *Fleet) Serve(ctx context.Context, pc net.PacketConn) error {
	tlsConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{protocol.ALPN},
		Certificates: []tls.Certificate{f.cfg.Identity.Cert},
		// Agents keep one long connection and never resume a TLS
		// session: a ticket would be work and memory for nothing.
		SessionTicketsDisabled: true,
	}
	qconf := &quic.Config{
		// No keep-alives from this side: the agents' keep-alives keep the
		// connections alive, and with thousands of agents every packet
		// counts.
		MaxIdleTimeout:        f.cfg.IdleTimeout,
		MaxIncomingStreams:    64, // control stream + outbox batches
		MaxIncomingUniStreams: -1,
	}
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(tlsConf, qconf)
	if err != nil {
		return fmt.Errorf("fleet: listen: %w", err)
	}
	defer tr.Close()
	defer ln.Close()
	defer f.bg.Stop() // after the connections' goroutines: they start its tasks
	if _, err := f.refreshQuarantine(ctx); err != nil {
		f.log.Error("reading the quarantine; retrying in the background", "err", err)
	}
	// Sessions outlive ctx while the fleet drains: their outbox batches
	// and desired-set syncs go on until the sessions are closed.
	sessCtx, endSessions := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer endSessions()
	wg.Go(func() { f.watchQuarantine(ctx) })
	wg.Go(func() { f.watchAgents(ctx) })
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				ln.Close() // no new agents while draining
				f.drain()
				f.closeAll()
				return nil
			}
			f.closeAll()
			return fmt.Errorf("fleet: accept: %w", err)
		}
		wg.Go(func() { f.serveConn(sessCtx, conn) })
	}
}

func (f *Fleet) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutting.Store(true) // a session authenticated from now on is closed at once
	for _, s := range f.sessions {
		if s.connected.Load() {
			s.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "controller shutting down")
		}
	}
}

// watchQuiet arms s's quiet timer: an agent that sends no frame for
// MissedHeartbeats load-report intervals while its connection stays up is
// disconnected. The timer re-arms itself for what is left when frames
// came meanwhile, so the fleet never walks its sessions for this and a
// frame costs no timer update.
func (f *Fleet) watchQuiet(s *Session) {
	limit := time.Duration(f.cfg.MissedHeartbeats) * f.cfg.HeartbeatInterval
	var check func()
	check = func() {
		if !s.connected.Load() {
			return
		}
		quiet := time.Duration(time.Now().UnixNano() - s.lastSeen.Load())
		if quiet < limit {
			s.quiet.Reset(limit - quiet)
			return
		}
		f.log.Warn("agent missed heartbeats", "agent", s.ID, "name", s.hello.Name, "quiet", quiet.Round(time.Millisecond))
		s.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseProtocolViolation), "missed heartbeats")
	}
	s.quiet = time.AfterFunc(limit, check)
}

const maxControlFrame = 1 << 20

// admitTimeout bounds the store's work to admit one agent.
const admitTimeout = 20 * time.Second

// serveConn serves one agent connection for as long as it lasts.
func (f *Fleet) serveConn(ctx context.Context, conn *quic.Conn) {
	// The admission (hello, the store's checks, welcome) runs on a
	// goroutine of its own: its stack grows deep in the database driver
	// and is freed when it ends, while this one, which waits for the
	// agent's frames as long as the session lasts (one per agent), stays
	// shallow.
	var s *Session
	admitted := make(chan struct{})
	go func() {
		defer close(admitted)
		s = f.admit(ctx, conn)
	}()
	<-admitted
	if s == nil {
		return
	}
	sctx, stopStreams := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer streams.Wait()
	defer stopStreams()
	streams.Go(func() { f.serveAgentStreams(sctx, s) })
	if f.tags.set(s.ID, s.Labels()) {
		// A tag no agent had before: other agents' sets may change too.
		f.bg.Go(f.SyncDesired)
	}
	streams.Go(func() { f.syncOne(sctx, s) })
	h := &s.hello
	link := store.AgentLink{Agent: s.ID, Since: time.Unix(0, s.connectedAt), OS: h.OS, Arch: h.Arch, Engine: h.Engine,
		Version: h.AgentVersion, CPUs: h.CPUs, MemTotalBytes: h.MemTotalBytes}
	if f.cfg.Cluster != nil {
		f.cfg.Cluster.AgentUp(link)
		defer f.cfg.Cluster.AgentDown(link)
	}

	err := f.readControl(s)
	s.connected.Store(false)
	s.quiet.Stop()
	f.index.mark(s)
	conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "")
	f.cfg.Metrics.connected(f.Connected())
	f.log.Info("agent disconnected", "agent", s.ID, "name", s.hello.Name, "err", err)
}

// admit reads an agent's hello, authenticates it, makes its session live
// and welcomes it; nil when the connection was refused or failed.
func (f *Fleet) admit(ctx context.Context, conn *quic.Conn) *Session {
	log := f.log.With("remote", conn.RemoteAddr().String())
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ctrl, err := conn.AcceptStream(hctx)
	cancel()
	if err != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseProtocolViolation), "no control stream")
		return nil
	}
	ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := protocol.ReadMsg(ctrl, maxControlFrame)
	ctrl.SetReadDeadline(time.Time{})
	hello, ok := msg.(*protocol.Hello)
	if err != nil || !ok {
		log.Warn("refusing connection: no hello", "err", err)
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseProtocolViolation), "expected hello")
		return nil
	}
	// The store's work for an agent that gave up waiting (it closes the
	// connection; a real one waits 10 s for its welcome) stops, so that a
	// storm of reconnections cannot pile up behind abandoned admissions.
	actx, cancelAdmission := context.WithTimeout(ctx, admitTimeout)
	defer cancelAdmission()
	stop := context.AfterFunc(conn.Context(), cancelAdmission)
	defer stop()
	agent, credential, perr := f.authenticate(actx, hello)
	if perr != nil {
		f.refuse(ctx, log, conn, ctrl, hello.Name, perr)
		return nil
	}
	s := &Session{ID: agent.ID, hello: *hello, f: f, conn: conn, ctrl: ctrl, version: min(hello.ProtocolVersion, protocol.Version),
		connectedAt: time.Now().UnixNano()}
	s.hello.JoinSecret, s.hello.Credential, s.hello.Digests, s.hello.Crashed = nil, nil, nil, nil
	s.apply(agent)
	s.digests.Store(newDigestSet(hello.Digests...))
	s.memAvail.Store(hello.MemAvailBytes)
	s.memKnown.Store(hello.MemTotalBytes > 0)
	s.lastSeen.Store(time.Now().UnixNano())
	welcome := &protocol.Welcome{
		AgentID: agent.ID, Credential: credential, ControllerID: f.cfg.ControllerID,
		HeartbeatIntervalMS: uint64(f.cfg.HeartbeatInterval.Milliseconds()), ProtocolVersion: protocol.Version,
	}
	// Crash reports are stored before the Welcome that says so, and
	// before the session takes invocations.
	if len(hello.Crashed) > 0 {
		welcome.CrashesRecorded = f.recordCrashes(actx, agent.ID, hello.Name, hello.Crashed)
	}
	if _, err := f.refreshQuarantine(actx); err != nil {
		log.Warn("reading the quarantine", "err", err)
	}
	// The session is live before the Welcome leaves, so once the agent
	// says it is connected the scheduler already routes to this
	// connection, never to a stale one of the same agent.
	s.connected.Store(true)
	f.mu.Lock()
	if _, gone := f.removed[s.ID]; gone {
		// Removed while it was being authenticated (control.go).
		f.mu.Unlock()
		s.connected.Store(false)
		f.refuse(ctx, log, conn, ctrl, hello.Name, unknownAgent)
		return nil
	}
	if f.shutting.Load() {
		// Authenticated while the fleet drains: come back later.
		f.mu.Unlock()
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "controller shutting down")
		return nil
	}
	old := f.sessions[s.ID]
	f.sessions[s.ID] = s
	// It came back, and reported its crashes: what it was running when it
	// went silent did not kill it (or is quarantined now).
	f.releaseHolds(s.ID)
	f.mu.Unlock()
	if old != nil {
		f.index.update(s, old)
	} else {
		f.index.update(s)
	}
	if old != nil && old.connected.Load() {
		old.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseSuperseded), "agent connected again")
	}
	if err := protocol.WriteMsg(ctrl, welcome); err != nil {
		s.connected.Store(false)
		f.index.mark(s)
		conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "")
		return nil
	}
	f.watchQuiet(s)
	f.cfg.Metrics.connected(f.Connected())
	log.Info("agent connected", "agent", s.ID, "name", hello.Name, "arch", hello.Arch, "engine", hello.Engine, "protocol_version", s.version)
	f.sendQuarantine(s)
	return s
}

// refuse answers a hello with perr and closes the connection.
func (f *Fleet) refuse(ctx context.Context, log *slog.Logger, conn *quic.Conn, ctrl *quic.Stream, name string, perr *protocol.Error) {
	log.Warn("refusing agent", "name", name, "err", perr)
	f.cfg.Metrics.refused()
	protocol.WriteMsg(ctrl, perr)
	ctrl.Close()
	// Give the Error frame a moment to leave before the close overtakes it.
	select {
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
	}
	conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseRefused), perr.Message)
}

// unknownAgent is the answer to a credential the store does not hold.
var unknownAgent = &protocol.Error{Code: protocol.Unauthorized, Message: "unknown agent or bad credential: the agent was removed, or this controller's database does not know it; it needs a new join token"}

// authenticate checks a hello's credential or join secret. On a join it
// creates the agent and returns its new credential.
func (f *Fleet) authenticate(ctx context.Context, h *protocol.Hello) (store.Agent, []byte, *protocol.Error) {
	if h.ProtocolVersion == 0 {
		return store.Agent{}, nil, &protocol.Error{Code: protocol.UnsupportedVersion, Message: fmt.Sprintf("protocol version %d; this controller speaks 1 to %d", h.ProtocolVersion, protocol.Version)}
	}
	refused := unknownAgent
	now := time.Now().UTC()
	switch {
	case len(h.Credential) > 0:
		a, err := f.cfg.Store.AgentByID(ctx, h.AgentID)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				return a, nil, &protocol.Error{Code: protocol.Internal, Message: "cannot check credentials now"}
			}
			return a, nil, refused
		}
		sum := sha256.Sum256(h.Credential)
		if subtle.ConstantTimeCompare(sum[:], a.CredentialHash) != 1 {
			return a, nil, refused
		}
		if err := f.cfg.Store.TouchAgent(ctx, a.ID, h.Name, h.Labels, now); err != nil {
			f.log.Warn("recording agent", "agent", a.ID, "err", err)
		}
		return a, nil, nil
	case len(h.JoinSecret) > 0:
		sum := sha256.Sum256(h.JoinSecret)
		cred := make([]byte, 32)
		rand.Read(cred)
		idb := make([]byte, 8)
		rand.Read(idb)
		credSum := sha256.Sum256(cred)
		// The token's use is spent in the transaction that creates the
		// agent: a single-use token lets exactly one agent in.
		a, err := f.cfg.Store.JoinAgent(ctx, sum[:], store.Agent{ID: "ag_" + hex.EncodeToString(idb), Name: h.Name, CredentialHash: credSum[:],
			Labels: h.Labels, JoinMemBytes: h.MemTotalBytes})
		if errors.Is(err, store.ErrNotFound) {
			return store.Agent{}, nil, &protocol.Error{Code: protocol.Unauthorized, Message: "unknown, expired, revoked or used-up join token"}
		}
		if err != nil {
			return a, nil, &protocol.Error{Code: protocol.Internal, Message: "cannot register the agent now"}
		}
		f.log.Info("agent joined", "agent", a.ID, "name", h.Name)
		return a, cred, nil
	}
	return store.Agent{}, nil, refused
}

func (f *Fleet) readControl(s *Session) error {
	for {
		msg, err := protocol.ReadMsg(s.ctrl, maxControlFrame)
		if err != nil {
			return err
		}
		s.lastSeen.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *protocol.Heartbeat:
			s.memAvail.Store(m.MemAvailBytes)
			if m.MemAvailBytes > 0 {
				s.memKnown.Store(s.hello.MemTotalBytes > 0)
			}
			s.total.Store(m.InvocationsTotal)
			if s.stale() {
				f.index.mark(s)
			}
			if m.DesiredResync {
				f.resyncRequested(s)
			}
		case *protocol.Unknown:
		default:
			f.log.Warn("unexpected control message", "agent", s.ID, "type", msg.Type())
		}
	}
}

// Invoke runs inv on the session's agent. Code is sent on the same stream if
// the agent asks for it.
//
// The invocation runs at most once here: Invoke returns an error meaning
// "run it elsewhere" (ErrNotStarted, ErrDisconnected) only when the Invoke
// provably never reached the agent's runtime. An agent that sends no
// Started within the start timeout is left out of scheduling and probed
// with a Ping; the call keeps waiting for its Result, since the agent may be
// running it (or have died of it: if the Ping fails too, the digest is held,
// see holdDigest). Only when idempotent is set and the agent answers the
// Ping is the call cancelled there, with ErrSlowStart.
//
// # Errors
//
// ErrNotStarted, ErrDisconnected, ErrSlowStart (run it elsewhere);
// ErrAgentLost (it may have run; do not run it again); the ctx's error; or a
// *protocol.Error the agent answered with instead of a Result. A function's
// own failure is a Result with a non-OK Code, not an error, and so is an
// agent's refusal (protocol.NotStarted codes: run it elsewhere).
func (s *Session) Invoke(ctx context.Context, inv *protocol.Invoke, idempotent bool) (*protocol.Result, error) {
	if !s.connected.Load() {
		return nil, fmt.Errorf("%s: %w", s.ID, ErrDisconnected)
	}
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrNotStarted, err)
	}
	defer quicstream.Finish(str)
	stop := context.AfterFunc(ctx, func() { cancelStream(str) })
	defer stop()
	if err := protocol.WriteMsg(str, inv); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrNotStarted, err)
	}
	// From here on the agent may have the Invoke. It acknowledges at once;
	// silence means it is slow, cut off, or dead (kill -9 leaves the
	// connection open until the idle timeout), perhaps of this very call.
	w := &startWatch{}
	timer := time.AfterFunc(s.f.cfg.StartTimeout, func() {
		if done, ok := s.f.bg.Enter(); ok {
			defer done()
			s.noStart(inv, str, idempotent, w)
		}
	})
	defer timer.Stop()
	for {
		msg, err := protocol.ReadMsg(str, maxControlFrame*64)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil, ctx.Err()
			case w.redispatch.Load():
				return nil, fmt.Errorf("%w: %s: no Started within %v", ErrSlowStart, s.hello.Name, s.f.cfg.StartTimeout)
			case !w.answered.Load() && closedAfterDrain(err):
				return nil, fmt.Errorf("%w: %s shut down without taking it", ErrNotStarted, s.hello.Name)
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrAgentLost, s.hello.Name, err)
		}
		w.answered.Store(true)
		w.state.CompareAndSwap(startWaiting, startAnswered)
		s.lastSeen.Store(time.Now().UnixNano()) // any frame proves the agent alive
		switch m := msg.(type) {
		case *protocol.Started:
		case *protocol.Result:
			if m.Code == protocol.OK {
				s.addDigest(inv.Digest)
			}
			return m, nil
		case *protocol.NeedCode:
			code, codeErr := s.f.cfg.Store.Code(ctx, m.Digest)
			var reply protocol.Message = &protocol.Code{Digest: m.Digest, Wasm: code}
			if codeErr != nil {
				reply = &protocol.Error{Code: protocol.UnknownDigest, Message: codeErr.Error()}
			}
			if err := protocol.WriteMsg(str, reply); err != nil {
				return nil, fmt.Errorf("%w: sending code: %v", ErrAgentLost, err)
			}
			if codeErr == nil {
				s.f.cfg.Metrics.codeSent(len(code))
			}
		case *protocol.Error:
			return nil, m
		case *protocol.Unknown:
		default:
			return nil, fmt.Errorf("agent %s answered Invoke with %v", s.ID, msg.Type())
		}
	}
}

func cancelStream(str *quic.Stream) {
	str.CancelRead(quic.StreamErrorCode(protocol.Canceled))
	str.CancelWrite(quic.StreamErrorCode(protocol.Canceled))
}

// startWatch is what an invocation and its start timer share.
type startWatch struct {
	state      atomic.Int32 // startWaiting, then startAnswered or startLate
	answered   atomic.Bool  // a frame came back on the stream
	redispatch atomic.Bool  // the timer cancelled the stream to run it elsewhere
}

const (
	startWaiting int32 = iota
	startAnswered
	startLate
)

// noStart runs when an invocation got no frame within the start timeout:
// the agent leaves scheduling until its next heartbeat and is probed. An
// agent that answers the probe is slow: an idempotent call is cancelled
// there to run elsewhere, any other keeps waiting. One that does not may
// have died of this call: the digest is held.
func (s *Session) noStart(inv *protocol.Invoke, str *quic.Stream, idempotent bool, w *startWatch) {
	if !w.state.CompareAndSwap(startWaiting, startLate) {
		return
	}
	s.suspect.Store(time.Now().UnixNano())
	alive := s.probe() == nil
	if w.answered.Load() {
		return // it answered meanwhile
	}
	log := s.f.log.With("agent", s.ID, "name", s.hello.Name, "activation", inv.ActivationID, "digest", inv.Digest)
	switch {
	case alive && idempotent:
		log.Warn("agent alive but did not start an idempotent invocation in time; running it elsewhere", "start_timeout", s.f.cfg.StartTimeout)
		w.redispatch.Store(true)
		cancelStream(str)
	case alive:
		log.Warn("agent alive but slow to start an invocation; waiting for its result (it is not run twice)", "start_timeout", s.f.cfg.StartTimeout)
	default:
		log.Warn("agent silent after an invocation reached it; waiting for its result until the deadline", "start_timeout", s.f.cfg.StartTimeout)
		s.f.holdDigest(inv.Digest, s, "no Started and no Pong")
	}
}

// probe asks the agent for a Pong on a fresh stream, within the start
// timeout (at most 1s).
func (s *Session) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.f.cfg.StartTimeout, time.Second))
	defer cancel()
	return s.Ping(ctx, nil)
}

// Push sends code to the agent, which stores and compiles it.
func (s *Session) Push(ctx context.Context, digest string, code []byte) error {
	if !s.connected.Load() {
		return ErrDisconnected
	}
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer str.CancelRead(0)
	defer str.Close()
	stop := context.AfterFunc(ctx, func() { str.CancelRead(0); str.CancelWrite(0) })
	defer stop()
	if err := protocol.WriteMsg(str, &protocol.Code{Digest: digest, Wasm: code}); err != nil {
		return err
	}
	msg, err := protocol.ReadMsg(str, maxControlFrame)
	if err != nil {
		return err
	}
	switch m := msg.(type) {
	case *protocol.Ack:
		s.addDigest(digest)
		s.f.cfg.Metrics.codeSent(len(code))
		return nil
	case *protocol.Error:
		return m
	}
	return fmt.Errorf("agent %s answered Code with %v", s.ID, msg.Type())
}

// Ping measures one stream round trip (a floor for benchmarks, and a
// liveness probe). It gives up when ctx is done.
func (s *Session) Ping(ctx context.Context, payload []byte) error {
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer str.CancelRead(0)
	defer str.Close()
	stop := context.AfterFunc(ctx, func() { str.CancelRead(0); str.CancelWrite(0) })
	defer stop()
	if err := protocol.WriteMsg(str, &protocol.Ping{Nonce: 1, Payload: payload}); err != nil {
		return err
	}
	msg, err := protocol.ReadMsg(str, maxControlFrame)
	if err != nil {
		return err
	}
	if _, ok := msg.(*protocol.Pong); !ok {
		return fmt.Errorf("expected pong, got %v", msg.Type())
	}
	return nil
}

// Drop tells every connected agent to forget digests.
func (f *Fleet) Drop(digests ...string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.sessions {
		if s.connected.Load() {
			s.drop(digests)
		}
	}
}

// drop tells the session's agent to forget digests.
func (s *Session) drop(digests []string) {
	s.updateDigests(func(m digestSet) {
		for _, d := range digests {
			delete(m, unique.Make(d))
		}
	})
	s.ctrlMu.Lock()
	err := protocol.WriteMsg(s.ctrl, &protocol.Drop{Digests: digests})
	s.ctrlMu.Unlock()
	if err != nil {
		s.f.log.Warn("sending drop", "agent", s.ID, "err", err)
	}
}

// Sessions returns the connected sessions (for pushes and tests).
func (f *Fleet) Sessions() []*Session {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*Session, 0, len(f.sessions))
	for _, s := range f.sessions {
		if s.connected.Load() {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *Session) int {
		if a.hello.Name < b.hello.Name {
			return -1
		} else if a.hello.Name > b.hello.Name {
			return 1
		}
		return 0
	})
	return out
}

// Name is the agent's name.
func (s *Session) Name() string { return s.hello.Name }
