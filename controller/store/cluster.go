package store

import (
	"context"
	"time"
)

// Controller is one controller process of a cluster sharing the store
// (controller/cluster): its instance id, where it serves, and when it was
// last heard from.
type Controller struct {
	// ID is the instance id (cluster.NewInstanceID).
	ID string
	// RESTAddr and QUICAddr are the addresses it listens on, as it says.
	RESTAddr string
	QUICAddr string
	// Started is when its row was made; LastSeen its last heartbeat. Both
	// are set by the store from its own clock (the database's for
	// Postgres), so that controllers whose clocks differ agree on who is
	// dead.
	Started  time.Time
	LastSeen time.Time
}

// AgentLink is a session between an agent and a controller, as the
// controller holding it stored it; the rest is what the agent said in
// that session's hello.
type AgentLink struct {
	Agent      string
	Controller string
	// Since is when the session came up; it names the session, so that an
	// ended session removes its own link and never a newer one of the same
	// pair (kept in UTC, to the microsecond).
	Since         time.Time
	OS            string
	Arch          string
	Engine        string
	Version       string
	CPUs          uint64
	MemTotalBytes uint64
}

// ClusterAgent is an agent with its links to the live controllers.
type ClusterAgent struct {
	Agent
	// Links are sorted by controller id; empty when no live controller
	// has a session with it. Never nil.
	Links []AgentLink
}

// Membership keeps which controllers share the store and which agents
// each has a session with (controller/cluster writes it). Both stores
// implement it: Postgres in two tables (controllers, agent_links) that
// every controller reads; the embedded store in memory, since one process
// holds its file and nothing of it should outlive that process.
//
// A controller is live while its last heartbeat is at most deadAfter old
// (by the store's clock); a dead one's links do not count, and
// RemoveDeadControllers removes it and them.
type Membership interface {
	// HeartbeatController makes or refreshes c's row: LastSeen is set to
	// the store's clock, RESTAddr and QUICAddr replaced, Started set when
	// the row is made. It reports whether it made it (the first heartbeat,
	// or one after the row was removed as dead: the controller then writes
	// its links again).
	HeartbeatController(ctx context.Context, c Controller) (created bool, err error)
	// ListControllers returns every controller row, live or not, sorted by id.
	ListControllers(ctx context.Context) ([]Controller, error)
	// RemoveDeadControllers removes the controllers silent for more than
	// deadAfter, with their links, and returns their ids, sorted.
	RemoveDeadControllers(ctx context.Context, deadAfter time.Duration) ([]string, error)
	// RemoveController removes one controller's row and links (it leaves
	// the cluster). No error when there is none.
	RemoveController(ctx context.Context, id string) error
	// PutAgentLinks makes or replaces links, in one write. A link whose
	// agent or controller has no row is skipped (the agent was removed,
	// or the controller's row was removed as dead: its next heartbeat
	// reports created and it writes them again).
	PutAgentLinks(ctx context.Context, links []AgentLink) error
	// DeleteAgentLinks removes the links named by (Agent, Controller,
	// Since), in one write; a link whose Since differs (a newer session)
	// stays.
	DeleteAgentLinks(ctx context.Context, links []AgentLink) error
	// ClusterAgents returns every agent (sorted as ListAgents) with its
	// links to controllers live within deadAfter: one read, whatever the
	// number of agents.
	ClusterAgents(ctx context.Context, deadAfter time.Duration) ([]ClusterAgent, error)
}

var (
	_ Membership = (*Postgres)(nil)
	_ Membership = (*Embedded)(nil)
	_ ChangeFeed = (*Postgres)(nil)
	_ ChangeFeed = (*Embedded)(nil)
)

// MaxAgentLinkText bounds each text of an AgentLink the store keeps (they
// come from an agent's hello); longer ones are cut.
const MaxAgentLinkText = 256

// prepareLink is how the store keeps a link: texts bounded and valid
// UTF-8, the time in UTC to the microsecond, byte counts within bigint.
func prepareLink(l AgentLink) AgentLink {
	l.Since = storeTime(l.Since)
	l.OS, l.Arch = boundText(l.OS, MaxAgentLinkText), boundText(l.Arch, MaxAgentLinkText)
	l.Engine, l.Version = boundText(l.Engine, MaxAgentLinkText), boundText(l.Version, MaxAgentLinkText)
	l.CPUs, l.MemTotalBytes = min(l.CPUs, maxAgentBytes), min(l.MemTotalBytes, maxAgentBytes)
	return l
}
