package store

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// members is the embedded store's Membership: in memory, since one
// process holds the file (a cluster of one controller) and nothing of it
// should outlive that process: a restarted controller has no sessions.
// Links are kept only for agents the file knows (checked when written,
// and a removed agent's are dropped as its record goes: the Postgres
// foreign key's cascade).
type members struct {
	mu          sync.Mutex
	controllers map[string]Controller
	links       map[[2]string]AgentLink // by (agent, controller)
}

func (m *members) init() {
	if m.controllers == nil {
		m.controllers, m.links = map[string]Controller{}, map[[2]string]AgentLink{}
	}
}

// HeartbeatController implements Membership.
func (e *Embedded) HeartbeatController(ctx context.Context, c Controller) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	t := now()
	old, ok := m.controllers[c.ID]
	c.Started, c.LastSeen = t, t
	if ok {
		c.Started = old.Started
	}
	m.controllers[c.ID] = c
	return !ok, nil
}

// ListControllers implements Membership.
func (e *Embedded) ListControllers(ctx context.Context) ([]Controller, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := make([]Controller, 0, len(m.controllers))
	for _, c := range m.controllers {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b Controller) int { return cmp.Compare(a.ID, b.ID) })
	return cs, nil
}

// drop removes the links for which gone is true; m.mu is held.
func (m *members) drop(gone func(k [2]string) bool) {
	for k := range m.links {
		if gone(k) {
			delete(m.links, k)
		}
	}
}

// RemoveDeadControllers implements Membership.
func (e *Embedded) RemoveDeadControllers(ctx context.Context, deadAfter time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := []string{}
	bound := now().Add(-deadAfter)
	for id, c := range m.controllers {
		if c.LastSeen.Before(bound) {
			ids = append(ids, id)
			delete(m.controllers, id)
		}
	}
	m.drop(func(k [2]string) bool { return slices.Contains(ids, k[1]) })
	slices.Sort(ids)
	return ids, nil
}

// RemoveController implements Membership.
func (e *Embedded) RemoveController(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.controllers, id)
	m.drop(func(k [2]string) bool { return k[1] == id })
	return nil
}

// dropAgent removes a removed agent's links (DeleteAgent).
func (m *members) dropAgent(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drop(func(k [2]string) bool { return k[0] == id })
}

// PutAgentLinks implements Membership. The agents are looked up in one
// read transaction, before the links are kept.
func (e *Embedded) PutAgentLinks(ctx context.Context, links []AgentLink) error {
	if len(links) == 0 {
		return nil
	}
	known := make(map[string]bool, len(links))
	err := e.view(ctx, func(tx *bolt.Tx) error {
		agents := tx.Bucket(bucketAgents)
		for _, l := range links {
			known[l.Agent] = agents.Get([]byte(l.Agent)) != nil
		}
		return nil
	})
	if err != nil {
		return boltFail(err, "put %d agent links", len(links))
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	for _, l := range links {
		if _, ok := m.controllers[l.Controller]; ok && known[l.Agent] {
			m.links[[2]string{l.Agent, l.Controller}] = prepareLink(l)
		}
	}
	return nil
}

// DeleteAgentLinks implements Membership.
func (e *Embedded) DeleteAgentLinks(ctx context.Context, links []AgentLink) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range links {
		k := [2]string{l.Agent, l.Controller}
		if old, ok := m.links[k]; ok && old.Since.Equal(storeTime(l.Since)) {
			delete(m.links, k)
		}
	}
	return nil
}

// ClusterAgents implements Membership.
func (e *Embedded) ClusterAgents(ctx context.Context, deadAfter time.Duration) ([]ClusterAgent, error) {
	as, err := e.ListAgents(ctx)
	if err != nil {
		return nil, err
	}
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	byAgent := map[string][]AgentLink{}
	bound := now().Add(-deadAfter)
	for k, l := range m.links {
		if c, ok := m.controllers[k[1]]; ok && !c.LastSeen.Before(bound) {
			byAgent[k[0]] = append(byAgent[k[0]], l)
		}
	}
	out := make([]ClusterAgent, len(as))
	for i, a := range as {
		ls := byAgent[a.ID]
		slices.SortFunc(ls, func(a, b AgentLink) int { return cmp.Compare(a.Controller, b.Controller) })
		out[i] = ClusterAgent{Agent: a, Links: append([]AgentLink{}, ls...)}
	}
	return out, nil
}
