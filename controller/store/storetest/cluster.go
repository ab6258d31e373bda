package storetest

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wispfn/wisp/controller/store"
)

// clusterAgentLinks returns, by agent id, the controllers of each agent's
// links ClusterAgents lists (live within deadAfter), and the links.
func clusterAgentLinks(t *testing.T, m store.Membership, deadAfter time.Duration) (map[string][]string, map[string][]store.AgentLink) {
	t.Helper()
	cas, err := m.ClusterAgents(t.Context(), deadAfter)
	noErr(t, "ClusterAgents", err)
	ctls, links := map[string][]string{}, map[string][]store.AgentLink{}
	for _, ca := range cas {
		if ca.Links == nil {
			t.Fatalf("agent %s: Links is nil, want a slice", ca.ID)
		}
		ctls[ca.ID] = []string{}
		for _, l := range ca.Links {
			if l.Agent != ca.ID {
				t.Fatalf("agent %s holds a link of %s", ca.ID, l.Agent)
			}
			ctls[ca.ID] = append(ctls[ca.ID], l.Controller)
		}
		links[ca.ID] = ca.Links
	}
	return ctls, links
}

// testMembership: the Membership contract. Heartbeats make a controller's
// row once; links are kept for known agents and controllers only, listed
// per agent sorted by controller, removed by their own session only, and
// go with their agent, their controller, or their controller's death.
func testMembership(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	m, ok := s.(store.Membership)
	if !ok {
		t.Fatalf("%T is no store.Membership: GET /v1/agents could not show the cluster", s)
	}
	ctx := t.Context()
	const live = time.Minute
	created, err := m.HeartbeatController(ctx, store.Controller{ID: "c1", RESTAddr: "10.0.0.1:4000", QUICAddr: "10.0.0.1:4433"})
	noErr(t, "first heartbeat", err)
	if !created {
		t.Fatal("the first heartbeat did not make the row")
	}
	created, err = m.HeartbeatController(ctx, store.Controller{ID: "c1", RESTAddr: "10.0.0.1:4001", QUICAddr: "10.0.0.1:4433"})
	noErr(t, "second heartbeat", err)
	if created {
		t.Fatal("the second heartbeat made the row again")
	}
	cs, err := m.ListControllers(ctx)
	noErr(t, "ListControllers", err)
	if len(cs) != 1 || cs[0].ID != "c1" || cs[0].RESTAddr != "10.0.0.1:4001" || cs[0].QUICAddr != "10.0.0.1:4433" ||
		cs[0].Started.IsZero() || cs[0].LastSeen.Before(cs[0].Started) || cs[0].LastSeen.Location() != time.UTC {
		t.Fatalf("ListControllers = %+v", cs)
	}
	_, err = m.HeartbeatController(ctx, store.Controller{ID: "c2"})
	noErr(t, "heartbeat c2", err)

	for i := 1; i <= 3; i++ {
		_, err := s.CreateAgent(ctx, store.Agent{ID: agentID(i), Name: "edge", CredentialHash: tokenHash(agentID(i))})
		noErr(t, "CreateAgent", err)
	}
	since := time.Now().Add(-time.Minute)
	long := strings.Repeat("x", 1000) + "\x00\xff"
	link := store.AgentLink{Agent: agentID(1), Controller: "c2", Since: since, OS: "linux", Arch: "arm64",
		Engine: "compiler", Version: "1.2.3", CPUs: 4, MemTotalBytes: 1 << 30}
	noErr(t, "PutAgentLinks", m.PutAgentLinks(ctx, []store.AgentLink{
		link,
		{Agent: agentID(1), Controller: "c1", Since: since, OS: long},
		{Agent: agentID(2), Controller: "c1", Since: since},
		{Agent: agentID(2), Controller: "ghost", Since: since}, // no such controller: skipped
		{Agent: "ag_ghost", Controller: "c1", Since: since},    // no such agent: skipped
	}))
	ctls, links := clusterAgentLinks(t, m, live)
	equal(t, "links", ctls, map[string][]string{agentID(1): {"c1", "c2"}, agentID(2): {"c1"}, agentID(3): {}})
	got := links[agentID(1)][1]
	link.Since = since.UTC().Truncate(time.Microsecond)
	equal(t, "a link read back", got, link)
	if os := links[agentID(1)][0].OS; len(os) > store.MaxAgentLinkText || !utf8.ValidString(os) || strings.ContainsRune(os, 0) {
		t.Fatalf("an agent's long text kept as %d bytes (valid UTF-8 %v)", len(os), utf8.ValidString(os))
	}

	// A newer session of a pair replaces the link; the older session's
	// end removes nothing.
	newer := since.Add(time.Second)
	noErr(t, "PutAgentLinks newer", m.PutAgentLinks(ctx, []store.AgentLink{{Agent: agentID(2), Controller: "c1", Since: newer}}))
	noErr(t, "DeleteAgentLinks older", m.DeleteAgentLinks(ctx, []store.AgentLink{{Agent: agentID(2), Controller: "c1", Since: since}}))
	ctls, _ = clusterAgentLinks(t, m, live)
	equal(t, "after an older session's end", ctls[agentID(2)], []string{"c1"})
	noErr(t, "DeleteAgentLinks", m.DeleteAgentLinks(ctx, []store.AgentLink{{Agent: agentID(2), Controller: "c1", Since: newer}}))
	ctls, _ = clusterAgentLinks(t, m, live)
	equal(t, "after the session's end", ctls[agentID(2)], []string{})

	// An agent's removal takes its links.
	noErr(t, "PutAgentLinks", m.PutAgentLinks(ctx, []store.AgentLink{{Agent: agentID(3), Controller: "c1", Since: since}}))
	noErr(t, "DeleteAgent", s.DeleteAgent(ctx, agentID(3)))
	ctls, _ = clusterAgentLinks(t, m, live)
	if _, ok := ctls[agentID(3)]; ok {
		t.Fatalf("a removed agent is listed: %v", ctls)
	}

	// Leaving takes a controller's links.
	noErr(t, "RemoveController", m.RemoveController(ctx, "c2"))
	noErr(t, "RemoveController again", m.RemoveController(ctx, "c2"))
	ctls, _ = clusterAgentLinks(t, m, live)
	equal(t, "after c2 left", ctls[agentID(1)], []string{"c1"})

	// A silent controller's links stop counting, then go with it.
	time.Sleep(20 * time.Millisecond)
	ctls, _ = clusterAgentLinks(t, m, 5*time.Millisecond)
	equal(t, "links of a silent controller", ctls[agentID(1)], []string{})
	gone, err := m.RemoveDeadControllers(ctx, time.Minute)
	noErr(t, "RemoveDeadControllers", err)
	equal(t, "none dead within a minute", gone, []string{})
	gone, err = m.RemoveDeadControllers(ctx, 5*time.Millisecond)
	noErr(t, "RemoveDeadControllers", err)
	equal(t, "removed", gone, []string{"c1"})
	created, err = m.HeartbeatController(ctx, store.Controller{ID: "c1"})
	noErr(t, "heartbeat after removal", err)
	if !created {
		t.Fatal("a heartbeat after the row was removed did not report it made it again")
	}
	ctls, _ = clusterAgentLinks(t, m, live)
	equal(t, "a dead controller's links are gone", ctls[agentID(1)], []string{})
	noErr(t, "PutAgentLinks none", m.PutAgentLinks(ctx, nil))
	noErr(t, "DeleteAgentLinks none", m.DeleteAgentLinks(ctx, nil))
}
