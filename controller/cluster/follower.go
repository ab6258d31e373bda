package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// Reaction defaults: changes that come within Coalesce of the first make
// one reaction; Reconcile is the safety net that re-reads everything even
// when no notification came (one lost by a bug, a trigger dropped by hand).
const (
	DefaultCoalesce  = 25 * time.Millisecond
	DefaultReconcile = 30 * time.Second
)

// maxAgentKeys is how many agents one reaction re-reads one by one; more
// changed agents are re-read with one list of all.
const maxAgentKeys = 64

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	Feed store.ChangeFeed
	// Content re-syncs what follows the stored functions, modules,
	// scripts and secrets: the agents' desired sets, the cloud MQTT events
	// and the cloud timers. It must be safe to call when nothing changed.
	Content func(ctx context.Context)
	// Agents applies what operators set on agents (and their removal) to
	// this controller's sessions: ids are the agents that changed, nil
	// means every agent.
	Agents func(ctx context.Context, ids []string)
	// Coalesce and Reconcile: zero takes the defaults.
	Coalesce, Reconcile time.Duration
	Logger              *slog.Logger
}

// Follower makes this controller follow the changes every controller
// commits to the store (its own included): it watches the store's change
// feed and calls Content and Agents, each coalesced, and both every
// Reconcile even when the feed is silent. The two reactions run apart, so
// a slow one (a content resync waiting for an MQTT broker) never holds up
// the other (a removed agent's session closed at once).
type Follower struct {
	cfg FollowerConfig
	log *slog.Logger

	// contentKick and agentsKick wake the two reactions (capacity 1).
	contentKick, agentsKick chan struct{}

	mu        sync.Mutex
	content   bool
	allAgents bool
	agents    map[string]struct{}
}

// NewFollower checks cfg and returns a Follower; it does no I/O.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Feed == nil || cfg.Content == nil || cfg.Agents == nil {
		return nil, errors.New("cluster: a follower needs a feed and both reactions")
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = DefaultReconcile
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Follower{cfg: cfg, log: cfg.Logger, contentKick: make(chan struct{}, 1), agentsKick: make(chan struct{}, 1),
		agents: map[string]struct{}{}}, nil
}

// note records a change for the next reactions; it never blocks (the
// feed's connection waits for it).
func (f *Follower) note(c store.Change) {
	content, agents := false, false
	f.mu.Lock()
	switch c.Kind {
	case store.ChangeAll:
		f.content, f.allAgents = true, true
		content, agents = true, true
	case store.ChangeFunctions, store.ChangeModules, store.ChangeScripts, store.ChangeSecrets:
		f.content, content = true, true
	case store.ChangeAgents:
		if c.Key == "" || len(f.agents) >= maxAgentKeys {
			f.allAgents = true
		} else {
			f.agents[c.Key] = struct{}{}
		}
		agents = true
	}
	// Subjects and join tokens: nothing here follows them.
	f.mu.Unlock()
	if content {
		kick(f.contentKick)
	}
	if agents {
		kick(f.agentsKick)
	}
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run follows the feed until ctx is done and returns nil. A feed that
// ends with an error (its store closing) is watched again after a second.
func (f *Follower) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for ctx.Err() == nil {
			err := f.cfg.Feed.WatchChanges(ctx, f.note)
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("cluster: the change feed ended; watching it again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	})
	wg.Go(func() { f.react(ctx, f.contentKick, f.reactContent) })
	wg.Go(func() { f.react(ctx, f.agentsKick, f.reactAgents) })
	reconcile := time.NewTicker(f.cfg.Reconcile)
	defer reconcile.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconcile.C:
			f.note(store.Change{Kind: store.ChangeAll})
		}
	}
}

// react runs reaction after each wake-up, once the changes of the next
// Coalesce have joined it.
func (f *Follower) react(ctx context.Context, wake <-chan struct{}, reaction func(context.Context)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.cfg.Coalesce):
		}
		reaction(ctx)
	}
}

func (f *Follower) reactContent(ctx context.Context) {
	f.mu.Lock()
	content := f.content
	f.content = false
	f.mu.Unlock()
	if content {
		f.cfg.Content(ctx)
	}
}

func (f *Follower) reactAgents(ctx context.Context) {
	f.mu.Lock()
	all := f.allAgents
	var ids []string
	if !all {
		for id := range f.agents {
			ids = append(ids, id)
		}
	}
	f.allAgents = false
	clear(f.agents)
	f.mu.Unlock()
	switch {
	case all:
		f.cfg.Agents(ctx, nil)
	case len(ids) > 0:
		f.cfg.Agents(ctx, ids)
	}
}
