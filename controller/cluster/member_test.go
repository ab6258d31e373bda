package cluster

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// linkedTo is the controllers the store lists for agent id.
func linkedTo(t *testing.T, m *Member, id string) []string {
	t.Helper()
	cas, err := m.ClusterAgents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, ca := range cas {
		if ca.ID == id {
			out := []string{}
			for _, l := range ca.Links {
				out = append(out, l.Controller)
			}
			return out
		}
	}
	t.Fatalf("agent %s not listed", id)
	return nil
}

// TestMemberLinks: a member writes its row and the links of its sessions
// soon after they come and go, writes them again when its row was removed
// (as dead, by another controller), and leaves the cluster when it stops.
func TestMemberLinks(t *testing.T) {
	t.Parallel()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	for _, id := range []string{"ag_1", "ag_2"} {
		if _, err := st.CreateAgent(ctx, store.Agent{ID: id, Name: id, CredentialHash: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewMember(MemberConfig{Store: st, ID: "ctl-a", Heartbeat: 50 * time.Millisecond, RESTAddr: "r", QUICAddr: "q"})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	halt := sync.OnceFunc(func() { stop(); <-done })
	t.Cleanup(halt)

	since := time.Now()
	m.AgentUp(store.AgentLink{Agent: "ag_1", Since: since, OS: "linux"})
	m.AgentUp(store.AgentLink{Agent: "ag_2", Since: since})
	testwait.For(t, 5*time.Second, "both links", func() bool {
		return slices.Equal(linkedTo(t, m, "ag_1"), []string{"ctl-a"}) && slices.Equal(linkedTo(t, m, "ag_2"), []string{"ctl-a"})
	})
	// The session of ag_2 ended; a newer session of ag_1 replaced the
	// first, whose end then comes late and removes nothing.
	m.AgentDown(store.AgentLink{Agent: "ag_2", Since: since})
	m.AgentUp(store.AgentLink{Agent: "ag_1", Since: since.Add(time.Second)})
	m.AgentDown(store.AgentLink{Agent: "ag_1", Since: since})
	testwait.For(t, 5*time.Second, "ag_2 unlinked", func() bool { return len(linkedTo(t, m, "ag_2")) == 0 })
	if got := linkedTo(t, m, "ag_1"); !slices.Equal(got, []string{"ctl-a"}) {
		t.Fatalf("ag_1 links %v after its old session's late end", got)
	}
	// Another controller removed this one as dead: its next heartbeat
	// makes the row again and writes its links again.
	if err := st.RemoveController(ctx, "ctl-a"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "ag_1 linked again", func() bool { return slices.Equal(linkedTo(t, m, "ag_1"), []string{"ctl-a"}) })
	cs, err := st.ListControllers(ctx)
	if err != nil || len(cs) != 1 || cs[0].RESTAddr != "r" || cs[0].QUICAddr != "q" {
		t.Fatalf("ListControllers = %+v, %v", cs, err)
	}
	halt()
	if cs, _ := st.ListControllers(ctx); len(cs) != 0 {
		t.Fatalf("after Run ended the controller is still listed: %+v", cs)
	}
	if got := linkedTo(t, m, "ag_1"); len(got) != 0 {
		t.Fatalf("after Run ended ag_1 is linked to %v", got)
	}
}

// TestMemberRemovesDead: a member removes a controller silent for longer
// than its dead bound, with its links.
func TestMemberRemovesDead(t *testing.T) {
	t.Parallel()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	if _, err := st.CreateAgent(ctx, store.Agent{ID: "ag_1", Name: "a", CredentialHash: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.HeartbeatController(ctx, store.Controller{ID: "dead"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAgentLinks(ctx, []store.AgentLink{{Agent: "ag_1", Controller: "dead", Since: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	m, err := NewMember(MemberConfig{Store: st, ID: "live", Heartbeat: 20 * time.Millisecond, DeadAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	t.Cleanup(func() { stop(); <-done })
	testwait.For(t, 5*time.Second, "the dead controller removed", func() bool {
		cs, _ := st.ListControllers(ctx)
		return len(cs) == 1 && cs[0].ID == "live"
	})
	if got := linkedTo(t, m, "ag_1"); len(got) != 0 {
		t.Fatalf("ag_1 still linked to %v", got)
	}
}
