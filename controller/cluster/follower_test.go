package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// fakeFeed is a ChangeFeed a test drives: send reports changes to the
// watcher (the unit seam between the store and the follower).
type fakeFeed struct {
	ch chan store.Change
}

func (f *fakeFeed) WatchChanges(ctx context.Context, fn func(store.Change)) error {
	fn(store.Change{Kind: store.ChangeAll})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-f.ch:
			fn(c)
		}
	}
}

// reactions records the follower's calls.
type reactions struct {
	mu      sync.Mutex
	content int
	agents  [][]string // nil element: all
}

func (r *reactions) counts() (int, [][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.content, slices.Clone(r.agents)
}

func startFollower(t *testing.T, reconcile time.Duration) (*fakeFeed, *reactions) {
	t.Helper()
	feed := &fakeFeed{ch: make(chan store.Change)}
	r := &reactions{}
	f, err := NewFollower(FollowerConfig{Feed: feed, Reconcile: reconcile, Coalesce: 200 * time.Millisecond,
		Content: func(context.Context) { r.mu.Lock(); r.content++; r.mu.Unlock() },
		Agents: func(_ context.Context, ids []string) {
			r.mu.Lock()
			slices.Sort(ids)
			r.agents = append(r.agents, ids)
			r.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return feed, r
}

// TestFollowerCoalesces: the first ChangeAll re-reads everything once; a
// burst of changes within the coalescing window makes one reaction with
// the changed agents by id; kinds nothing follows make none.
func TestFollowerCoalesces(t *testing.T) {
	t.Parallel()
	feed, r := startFollower(t, time.Hour)
	testwait.For(t, 5*time.Second, "the first reaction", func() bool {
		c, a := r.counts()
		return c == 1 && len(a) == 1 && a[0] == nil
	})
	for _, c := range []store.Change{
		{Kind: store.ChangeFunctions, Key: "_/f"}, {Kind: store.ChangeModules, Key: "m"},
		{Kind: store.ChangeAgents, Key: "ag_2"}, {Kind: store.ChangeAgents, Key: "ag_1"},
		{Kind: store.ChangeSecrets, Key: "_/K"}, {Kind: store.ChangeAgents, Key: "ag_1"},
	} {
		feed.ch <- c
	}
	testwait.For(t, 5*time.Second, "the burst's reactions", func() bool { c, a := r.counts(); return c == 2 && len(a) == 2 })
	c, a := r.counts()
	if c != 2 || len(a) != 2 || !slices.Equal(a[1], []string{"ag_1", "ag_2"}) {
		t.Fatalf("after a burst: content %d, agents %v; want one reaction with ag_1, ag_2", c, a)
	}
	// Kinds nothing here follows, then a marker: only the marker reacts.
	feed.ch <- store.Change{Kind: store.ChangeSubjects, Key: "s"}
	feed.ch <- store.Change{Kind: store.ChangeJoinTokens, Key: "jt"}
	feed.ch <- store.Change{Kind: store.ChangeScripts, Key: "sc"}
	testwait.For(t, 5*time.Second, "the marker's reaction", func() bool { c, _ := r.counts(); return c == 3 })
	if _, a := r.counts(); len(a) != 2 {
		t.Fatalf("subjects, join tokens or scripts re-read agents: %v", a)
	}
	// Many agents at once are re-read with one list.
	for i := range maxAgentKeys + 5 {
		feed.ch <- store.Change{Kind: store.ChangeAgents, Key: "ag_" + string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}
	testwait.For(t, 5*time.Second, "the agents' reaction", func() bool { _, a := r.counts(); return len(a) >= 3 })
	if _, a := r.counts(); a[len(a)-1] != nil {
		t.Fatalf("%d changed agents were re-read one by one: %v", maxAgentKeys+5, a[len(a)-1])
	}
}

// TestFollowerReconciles: with a silent feed, everything is re-read every
// Reconcile.
func TestFollowerReconciles(t *testing.T) {
	t.Parallel()
	_, r := startFollower(t, 200*time.Millisecond)
	testwait.For(t, 10*time.Second, "three reconciliations", func() bool {
		c, a := r.counts()
		return c >= 3 && len(a) >= 3 && a[2] == nil
	})
}

// TestFollowerReactionsApart: a content resync that hangs (a broker that
// does not answer) does not hold up the agents' reaction.
func TestFollowerReactionsApart(t *testing.T) {
	t.Parallel()
	feed := &fakeFeed{ch: make(chan store.Change)}
	release := make(chan struct{})
	agents := make(chan []string, 10)
	f, err := NewFollower(FollowerConfig{Feed: feed, Reconcile: time.Hour,
		Content: func(ctx context.Context) { // every resync hangs, the first included
			select {
			case <-release:
			case <-ctx.Done():
			}
		},
		Agents: func(_ context.Context, ids []string) { agents <- ids }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { close(release); cancel(); <-done })
	if ids := <-agents; ids != nil {
		t.Fatalf("first agents reaction %v, want all", ids)
	}
	feed.ch <- store.Change{Kind: store.ChangeFunctions, Key: "_/f"}
	feed.ch <- store.Change{Kind: store.ChangeAgents, Key: "ag_1"}
	select {
	case ids := <-agents:
		if !slices.Equal(ids, []string{"ag_1"}) {
			t.Fatalf("agents reaction %v, want ag_1", ids)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agents' reaction waited for a hung content resync")
	}
}
