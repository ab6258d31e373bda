package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// Operator control of agents (wisp agent remove|cordon|uncordon|drain|label|cap).
//
// What an operator sets is kept in the store (store.AgentControl), so it
// survives controller restarts and reaches every controller on the same
// database: each applies it to its sessions at once when it made the
// change, at the agent's next connection, and when the store's change
// feed reports it (RefreshAgents, called by controller/cluster.Follower,
// within a second of the change on another controller; a full re-read
// every 30 s is the safety net), or, without a feed, within
// Config.AgentRefresh. Both close the sessions of agents another
// controller removed.
//
//   - cordoned: the agent is left out of scheduling; invocations already
//     sent to it finish. It keeps its desired set and serves its local
//     triggers.
//   - labels: each operator label overrides the agent's own label of the
//     same key (the part before "="); the result is what desired-set
//     assignment (tag=...) and APP scheduling see and GET /v1/agents shows.
//   - memory: the scheduler believes at most min(what the agent reported
//     at join, the operator's cap) of the memory an agent reports, so an
//     agent that lies in its heartbeats cannot draw every invocation.
//   - remove: the agent's record, and with it its credential, is deleted;
//     a connected agent is disconnected with protocol.CloseRefused and its
//     next hello is refused (Unauthorized). Nothing is sent to it any more.

// ControlState is what the agent control routes answer with.
type ControlState struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	Cordoned  bool   `json:"cordoned"`
	// Labels are the operator's labels (not the agent's own).
	Labels []string `json:"labels"`
	// MemCapBytes is the operator's cap, 0 for none; JoinMemBytes what the
	// agent reported at join, 0 when unknown.
	MemCapBytes  uint64 `json:"mem_cap_bytes"`
	JoinMemBytes uint64 `json:"join_mem_bytes"`
	// InFlight counts the invocations this controller has running on it.
	InFlight int64 `json:"in_flight"`
}

func (f *Fleet) controlState(a store.Agent) ControlState {
	st := ControlState{ID: a.ID, Name: a.Name, Cordoned: a.Control.Cordoned, Labels: a.Control.Labels,
		MemCapBytes: a.Control.MemCapBytes, JoinMemBytes: a.JoinMemBytes}
	f.mu.RLock()
	s := f.sessions[a.ID]
	f.mu.RUnlock()
	if s != nil {
		st.Connected, st.InFlight = s.connected.Load(), s.inflight.Load()
	}
	return st
}

// apply makes the session follow its agent's stored record. It runs before
// the session is live and whenever the record changes.
func (s *Session) apply(a store.Agent) {
	s.cordoned.Store(a.Control.Cordoned)
	labels := effectiveLabels(s.hello.Labels, a.Control.Labels)
	s.labels.Store(&labels)
	s.memCap.Store(memBound(a))
}

// Labels are the agent's labels: its own, overridden key by key by the
// operator's (its own alone before apply).
func (s *Session) Labels() []string {
	if l := s.labels.Load(); l != nil {
		return *l
	}
	return s.hello.Labels
}

// effectiveLabels is own with every label whose key the operator set
// replaced by the operator's, which come last, in their order.
func effectiveLabels(own, operator []string) []string {
	set := make(map[string]bool, len(operator))
	for _, l := range operator {
		set[labelKey(l)] = true
	}
	out := make([]string, 0, len(own)+len(operator))
	for _, l := range own {
		if !set[labelKey(l)] {
			out = append(out, l)
		}
	}
	return append(out, operator...)
}

func labelKey(l string) string {
	k, _, _ := strings.Cut(l, "=")
	return k
}

// memBound is the most memory the scheduler believes a's agent has, 0 for
// no bound.
func memBound(a store.Agent) uint64 {
	b := a.JoinMemBytes
	if c := a.Control.MemCapBytes; c > 0 && (b == 0 || c < b) {
		b = c
	}
	return b
}

// schedulerMemory is the memory the scheduler sees of the session: what
// the agent reported, bounded by its cap and by its reported total.
func (s *Session) schedulerMemory() (total, avail uint64) {
	total, avail = s.hello.MemTotalBytes, s.memAvail.Load()
	if c := s.memCap.Load(); c > 0 {
		total = min(total, c)
	}
	if total > 0 {
		avail = min(avail, total)
	}
	return total, avail
}

// Control reads an agent's stored record, lets change modify what
// operators set on it, stores it and applies it to the agent's session.
// store.ErrNotFound when the agent is unknown.
func (f *Fleet) Control(ctx context.Context, id string, change func(*store.AgentControl)) (ControlState, error) {
	a, err := f.cfg.Store.AgentByID(ctx, id)
	if err != nil {
		return ControlState{}, err
	}
	c := a.Control
	c.Labels = append([]string{}, c.Labels...)
	change(&c)
	if a, err = f.cfg.Store.SetAgentControl(ctx, id, c); err != nil {
		return ControlState{}, err
	}
	f.mu.RLock()
	s := f.sessions[id]
	f.mu.RUnlock()
	if s != nil {
		s.apply(a)
		if s.stale() {
			f.index.update(s) // a cap applies to the next decision
		}
	}
	// Labels decide assignment: desired sets may change (this agent's,
	// or every agent's when the cluster's tags changed).
	switch {
	case f.tags.set(id, effectiveLabels(a.Labels, a.Control.Labels)):
		f.bg.Go(f.SyncDesired)
	case s != nil && s.connected.Load():
		f.bg.Go(func(ctx context.Context) { f.syncOne(ctx, s) })
	}
	f.log.Info("agent control set", "agent", id, "cordoned", c.Cordoned, "labels", c.Labels, "mem_cap_bytes", c.MemCapBytes)
	return f.controlState(a), nil
}

// AgentControl returns an agent's control state. store.ErrNotFound.
func (f *Fleet) AgentControl(ctx context.Context, id string) (ControlState, error) {
	a, err := f.cfg.Store.AgentByID(ctx, id)
	if err != nil {
		return ControlState{}, err
	}
	return f.controlState(a), nil
}

// Drain cordons the agent and waits until this controller has no
// invocation running on it, or until wait has passed. The state it
// returns says how many are still running.
func (f *Fleet) Drain(ctx context.Context, id string, wait time.Duration) (ControlState, error) {
	st, err := f.Control(ctx, id, func(c *store.AgentControl) { c.Cordoned = true })
	if err != nil {
		return st, err
	}
	f.mu.RLock()
	s := f.sessions[id]
	f.mu.RUnlock()
	if s == nil {
		return st, nil
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(wait)
	for s.inflight.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-t.C:
		}
	}
	st.InFlight = s.inflight.Load()
	return st, nil
}

// Remove deletes the agent's record (and so its credential) and closes its
// session. A disconnected agent, or one this controller never saw, can be
// removed. store.ErrNotFound.
func (f *Fleet) Remove(ctx context.Context, id string) error {
	if err := f.cfg.Store.DeleteAgent(ctx, id); err != nil {
		return err
	}
	f.drop(id, "agent removed by an operator")
	return nil
}

// drop forgets the session of a removed agent and closes its connection.
func (f *Fleet) drop(id, reason string) {
	f.mu.Lock()
	s := f.sessions[id]
	delete(f.sessions, id)
	f.removed[id] = struct{}{}
	f.mu.Unlock()
	if s == nil {
		return
	}
	s.cordoned.Store(true) // an Invoke racing with the removal finds it out of scheduling
	f.index.update(s)      // no longer current: it leaves the index
	if s.connected.Load() {
		s.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseRefused), reason)
	}
	f.log.Info("agent removed", "agent", id, "name", s.hello.Name, "reason", reason)
}

// watchAgents applies what other controllers changed of the agents this
// one serves, every AgentRefresh (not at all when it is negative).
func (f *Fleet) watchAgents(ctx context.Context) {
	if f.cfg.AgentRefresh < 0 {
		return
	}
	t := time.NewTicker(f.cfg.AgentRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := f.refreshAgents(ctx); err != nil && ctx.Err() == nil {
			f.log.Warn("reading agents", "err", err)
		}
	}
}

// RefreshAgents applies the stored records of the agents ids names (nil:
// every agent) to this controller's sessions, at once: what operators
// set, and the removal of an agent (its session is closed, its next hello
// refused). A desired set that may have changed with an agent's labels is
// sent again. Errors are logged; the next refresh retries.
func (f *Fleet) RefreshAgents(ctx context.Context, ids []string) {
	if ids == nil {
		if err := f.refreshAgents(ctx); err != nil && ctx.Err() == nil {
			f.log.Warn("reading agents", "err", err)
		}
		return
	}
	tagsChanged := false
	var relabelled []*Session
	for _, id := range ids {
		a, err := f.cfg.Store.AgentByID(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			f.drop(id, "agent removed")
			tagsChanged = f.tags.set(id, nil) || tagsChanged
			continue
		case err != nil:
			if ctx.Err() == nil {
				f.log.Warn("reading an agent", "agent", id, "err", err)
			}
			continue
		}
		tagsChanged = f.tags.set(id, effectiveLabels(a.Labels, a.Control.Labels)) || tagsChanged
		f.mu.RLock()
		s := f.sessions[id]
		f.mu.RUnlock()
		if s != nil {
			before := s.Labels()
			s.apply(a)
			if !slices.Equal(before, s.Labels()) && s.connected.Load() {
				relabelled = append(relabelled, s)
			}
		}
	}
	f.resyncRelabelled(ctx, tagsChanged, relabelled)
}

// resyncRelabelled sends desired sets after agents' labels changed: every
// agent's when the cluster's tags changed, else the relabelled ones'.
func (f *Fleet) resyncRelabelled(ctx context.Context, tagsChanged bool, relabelled []*Session) {
	switch {
	case tagsChanged:
		f.SyncDesired(ctx)
	case len(relabelled) > 0:
		in, err := f.desiredInputs(ctx)
		if err != nil {
			f.log.Warn("reading the desired sets", "err", err)
			return
		}
		for _, s := range relabelled {
			f.bg.Go(func(ctx context.Context) { f.syncDesired(ctx, s, in) })
		}
	}
}

func (f *Fleet) refreshAgents(ctx context.Context) error {
	listed := time.Now().UnixNano()
	as, err := f.cfg.Store.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("fleet: list agents: %w", err)
	}
	tagsChanged := f.tags.setAll(as)
	byID := make(map[string]store.Agent, len(as))
	for _, a := range as {
		byID[a.ID] = a
	}
	f.mu.RLock()
	var gone []string
	var relabelled, stale []*Session
	for id, s := range f.sessions {
		a, ok := byID[id]
		switch {
		case ok:
			before := s.Labels()
			s.apply(a)
			if s.stale() {
				stale = append(stale, s)
			}
			if !slices.Equal(before, s.Labels()) && s.connected.Load() {
				relabelled = append(relabelled, s)
			}
		case s.connectedAt < listed:
			// Not a session that joined after the list was read: removed.
			gone = append(gone, id)
		}
	}
	f.mu.RUnlock()
	if len(stale) > 0 {
		f.index.update(stale...) // caps apply to the next decision
	}
	for _, id := range gone {
		f.drop(id, "agent removed")
	}
	f.resyncRelabelled(ctx, tagsChanged, relabelled)
	return nil
}
