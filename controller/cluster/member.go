package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// Membership bounds: a controller heartbeats every HeartbeatInterval and
// counts as dead once silent for DeadAfter (ten heartbeats: a GC pause or
// a slow store round trip does not kill it). A dead controller's row and
// links are removed by the first live controller that looks, every
// DeadAfter/2.
const (
	HeartbeatInterval = time.Second
	DeadAfter         = 10 * time.Second
)

// MemberConfig configures a Member.
type MemberConfig struct {
	Store store.Membership
	// ID is this controller's instance id (NewInstanceID).
	ID string
	// RESTAddr and QUICAddr are where it listens, as shown to operators
	// (or later, SetAddrs).
	RESTAddr, QUICAddr string
	// Heartbeat and DeadAfter: zero takes HeartbeatInterval and DeadAfter.
	Heartbeat, DeadAfter time.Duration
	Logger               *slog.Logger
}

// Member is this controller in its cluster: it keeps its row in the
// store's controllers table fresh, writes the links of the agents it has
// sessions with, and removes dead controllers. Its methods never wait for
// the store: links are queued and written by Run, coalesced, in one
// statement per heartbeat or sooner.
type Member struct {
	cfg  MemberConfig
	log  *slog.Logger
	kick chan struct{}

	mu sync.Mutex
	// restAddr and quicAddr are where this controller listens (SetAddrs).
	restAddr, quicAddr string
	up                 map[string]store.AgentLink // this controller's live sessions, by agent
	puts               map[string]store.AgentLink // links to write, by agent
	dels               []store.AgentLink          // ended sessions whose links to remove
}

// NewMember checks cfg and returns a Member; it does no I/O.
func NewMember(cfg MemberConfig) (*Member, error) {
	if cfg.Store == nil || cfg.ID == "" {
		return nil, errors.New("cluster: a member needs a store and an instance id")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = HeartbeatInterval
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = DeadAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Member{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), restAddr: cfg.RESTAddr, quicAddr: cfg.QUICAddr,
		up: map[string]store.AgentLink{}, puts: map[string]store.AgentLink{}}, nil
}

// SetAddrs sets the addresses the next heartbeats show (the controller
// knows them once it listens).
func (m *Member) SetAddrs(rest, quic string) {
	m.mu.Lock()
	m.restAddr, m.quicAddr = rest, quic
	m.mu.Unlock()
}

// ID is this controller's instance id.
func (m *Member) ID() string { return m.cfg.ID }

// AgentUp records that this controller has a session with l.Agent since
// l.Since (l.Controller is set to this controller).
func (m *Member) AgentUp(l store.AgentLink) {
	l.Controller = m.cfg.ID
	m.mu.Lock()
	m.up[l.Agent], m.puts[l.Agent] = l, l
	m.mu.Unlock()
	m.wake()
}

// AgentDown records that the session of l.Agent begun at l.Since ended. A
// newer session of the same agent keeps its link.
func (m *Member) AgentDown(l store.AgentLink) {
	l.Controller = m.cfg.ID
	m.mu.Lock()
	if cur, ok := m.up[l.Agent]; ok && cur.Since.Equal(l.Since) {
		delete(m.up, l.Agent)
	}
	if p, ok := m.puts[l.Agent]; ok && p.Since.Equal(l.Since) {
		delete(m.puts, l.Agent)
	}
	m.dels = append(m.dels, l)
	m.mu.Unlock()
	m.wake()
}

func (m *Member) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// ClusterAgents is every agent of the cluster with its links to live
// controllers (store.Membership.ClusterAgents within DeadAfter).
func (m *Member) ClusterAgents(ctx context.Context) ([]store.ClusterAgent, error) {
	return m.cfg.Store.ClusterAgents(ctx, m.cfg.DeadAfter)
}

// Run heartbeats until ctx is done, writing links as they come, then
// removes this controller's row and links (it leaves the cluster; a
// controller killed instead is removed as dead by the others). It returns
// nil.
func (m *Member) Run(ctx context.Context) error {
	defer m.leave(ctx)
	beat := time.NewTicker(m.cfg.Heartbeat)
	defer beat.Stop()
	m.heartbeat(ctx)
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			m.heartbeat(ctx)
			if time.Since(lastSweep) >= m.cfg.DeadAfter/2 {
				lastSweep = time.Now()
				m.sweep(ctx)
			}
		case <-m.kick:
		}
		m.flush(ctx)
	}
}

// heartbeat refreshes this controller's row. A row made anew (the first
// beat, or one after others removed this controller as dead while it was
// stalled) gets every live session's link written again.
func (m *Member) heartbeat(ctx context.Context) {
	m.mu.Lock()
	c := store.Controller{ID: m.cfg.ID, RESTAddr: m.restAddr, QUICAddr: m.quicAddr}
	m.mu.Unlock()
	created, err := m.cfg.Store.HeartbeatController(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cluster: heartbeat failed", "err", err)
		}
		return
	}
	if created {
		m.mu.Lock()
		for id, l := range m.up {
			m.puts[id] = l
		}
		n := len(m.up)
		m.mu.Unlock()
		m.log.Info("cluster: this controller's row was made", "controller", m.cfg.ID, "sessions", n)
		m.flush(ctx)
	}
}

// sweep removes the controllers silent for longer than DeadAfter.
func (m *Member) sweep(ctx context.Context) {
	gone, err := m.cfg.Store.RemoveDeadControllers(ctx, m.cfg.DeadAfter)
	switch {
	case err != nil && ctx.Err() == nil:
		m.log.Warn("cluster: removing dead controllers", "err", err)
	case len(gone) > 0:
		m.log.Warn("cluster: removed controllers silent for longer than the dead bound, with their agent links",
			"controllers", gone, "dead_after", m.cfg.DeadAfter)
	}
}

// flush writes the queued links; what fails stays queued for the next
// round (a newer session's link replaces an older one still queued).
func (m *Member) flush(ctx context.Context) {
	m.mu.Lock()
	puts := make([]store.AgentLink, 0, len(m.puts))
	for _, l := range m.puts {
		puts = append(puts, l)
	}
	dels := m.dels
	m.puts, m.dels = map[string]store.AgentLink{}, nil
	m.mu.Unlock()
	if len(dels) > 0 {
		if err := m.cfg.Store.DeleteAgentLinks(ctx, dels); err != nil {
			m.requeue(ctx, "removing agent links", err, nil, dels)
		}
	}
	if len(puts) > 0 {
		if err := m.cfg.Store.PutAgentLinks(ctx, puts); err != nil {
			m.requeue(ctx, "writing agent links", err, puts, nil)
		}
	}
}

func (m *Member) requeue(ctx context.Context, what string, err error, puts, dels []store.AgentLink) {
	if ctx.Err() == nil {
		m.log.Warn("cluster: "+what+"; retrying", "links", len(puts)+len(dels), "err", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range puts {
		if cur, ok := m.up[l.Agent]; ok && cur.Since.Equal(l.Since) {
			if _, newer := m.puts[l.Agent]; !newer {
				m.puts[l.Agent] = l
			}
		}
	}
	m.dels = append(dels, m.dels...)
}

// leave removes this controller's row and links, within 2 s of a fresh
// context (ctx is done by now).
func (m *Member) leave(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := m.cfg.Store.RemoveController(lctx, m.cfg.ID); err != nil {
		m.log.Warn("cluster: removing this controller's row at shutdown (the others remove it once it is silent)", "err", err)
	}
}
