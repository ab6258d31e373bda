package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
)

func TestAssigned(t *testing.T) {
	script, err := scheduler.ParseAPP([]byte("- gpu:\n    - workers: [edge2]\n  followup: fail\n- any:\n    - workers: \"*\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	edge1 := &Session{ID: "ag_1"}
	edge1.hello.Name, edge1.hello.Labels = "edge1", []string{"tag=cam"}
	edge2 := &Session{ID: "ag_2"}
	edge2.hello.Name = "edge2"
	fn := func(meta string) store.Function {
		m, err := fnspec.ParseMetadata([]byte(meta))
		if err != nil {
			t.Fatal(err)
		}
		return store.Function{Spec: fnspec.Spec{Metadata: m}}
	}
	unreadable := fn(``)
	unreadable.Unreadable = &fnspec.Error{Field: "metadata", Reason: "malformed JSON"}
	labelled := map[string]bool{"cam": true}
	tests := []struct {
		name         string
		fn           store.Function
		edge1, edge2 bool
	}{
		{"no tag: everyone", fn(``), true, true},
		{"tag nobody mentions: everyone", fn(`{"tag":"misc"}`), true, true},
		{"tag by label", fn(`{"tag":"cam"}`), true, false},
		{"tag by APP script", fn(`{"tag":"gpu"}`), false, true},
		{"APP script with *", fn(`{"tag":"any"}`), true, true},
		{"unreadable settings: nobody", unreadable, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := []scheduler.Script{script}
			if got := assigned(edge1, tt.fn, s, labelled); got != tt.edge1 {
				t.Errorf("edge1: %v, want %v", got, tt.edge1)
			}
			if got := assigned(edge2, tt.fn, s, labelled); got != tt.edge2 {
				t.Errorf("edge2: %v, want %v", got, tt.edge2)
			}
		})
	}
}

// keptStore is a Store whose only working method is KeptDigests.
type keptStore struct {
	Store
	kept map[string][]string
}

func (k keptStore) KeptDigests(_ context.Context, n int) (map[string][]string, error) {
	if n != MaxKeepDigests {
		return nil, fmt.Errorf("asked for %d digests, want MaxKeepDigests", n)
	}
	return k.kept, nil
}

// TestKeptDigests: the desired set takes each function's KeepDigests from
// one store read; none from a store without versions.
func TestKeptDigests(t *testing.T) {
	kept := map[string][]string{"_/f": {"c", "b"}}
	f := &Fleet{cfg: Config{Store: keptStore{kept: kept}}, log: slog.New(slog.DiscardHandler)}
	if got := f.keptDigests(t.Context()); !slices.Equal(got["_/f"], []string{"c", "b"}) {
		t.Fatalf("keptDigests = %v", got)
	}
	f.cfg.Store = nil
	if got := f.keptDigests(t.Context()); got != nil {
		t.Fatalf("keptDigests without a version store = %v", got)
	}
}

// TestTagsAreTheCluster: whether a tag is mentioned by a label is decided
// from every agent in the store, connected to this controller or not: a
// function tagged for an agent that is not connected here does not go to
// the others; once that agent is removed, nobody mentions the tag and
// the function goes to everyone, at once.
func TestTagsAreTheCluster(t *testing.T) {
	c := startController(t)
	ctx := t.Context()
	// An agent of the cluster labelled tag=cam, connected elsewhere or
	// nowhere: only its record is here.
	cam, err := c.store.CreateAgent(ctx, store.Agent{ID: "ag_00000000000000ca", Name: "cam", CredentialHash: []byte("cam"), Labels: []string{"tag=cam"}})
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, c.addr, c.token, "edge", t.TempDir())
	waitFor(t, "the agent", func() bool { return c.fleet.Connected() == 1 })
	createFunction(t, c.store, "plain", "hello_c", "")
	createFunction(t, c.store, "camfn", "hello_c", `{"tag":"cam"}`)
	c.fleet.SyncDesired(ctx)
	waitFor(t, "plain on edge", func() bool { _, ok := a.state.DesiredFunction("_", "plain"); return ok })
	if _, ok := a.state.DesiredFunction("_", "camfn"); ok {
		t.Fatal("a function tagged for another agent of the cluster reached edge")
	}
	if err := c.store.DeleteAgent(ctx, cam.ID); err != nil {
		t.Fatal(err)
	}
	c.fleet.RefreshAgents(ctx, []string{cam.ID})
	waitFor(t, "camfn on edge once nobody is labelled cam", func() bool { _, ok := a.state.DesiredFunction("_", "camfn"); return ok })
}

// TestSharedInputs: sessions that connect while nothing changed share one
// read of the desired sets' inputs; a SyncDesired (which every change
// leads to) makes the next one read again.
func TestSharedInputs(t *testing.T) {
	c := startController(t)
	ctx := t.Context()
	first, err := c.fleet.sharedInputs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.fleet.sharedInputs(ctx)
	if err != nil || again != first {
		t.Fatalf("a second connect read again (%v)", err)
	}
	createFunction(t, c.store, "f", "hello_c", "")
	c.fleet.SyncDesired(ctx)
	after, err := c.fleet.sharedInputs(ctx)
	if err != nil || after == first || after.gen <= first.gen || len(after.fns) != 1 {
		t.Fatalf("after a change: shared the old read (%v)", err)
	}
}

// TestDesiredSetsInReadOrder: a sync whose store read began before that of
// a set already sent to the agent is dropped, so a slow sync never puts an
// older set back (several syncs run at once, one per change).
func TestDesiredSetsInReadOrder(t *testing.T) {
	c := startController(t)
	a := startAgent(t, c.addr, c.token, "edge", t.TempDir())
	waitFor(t, "the agent", func() bool { return c.fleet.Connected() == 1 })
	s := c.fleet.Sessions()[0]
	// The store holds "newer" too, so the fleet's own syncs (which heal a
	// set that disagrees with the store) agree with the newer set; they
	// are done before the two sets below are sent.
	createFunction(t, c.store, "newer", "hello_wat", "")
	c.fleet.SyncDesired(t.Context())
	fn := func(name string) []store.Function {
		return []store.Function{{Module: "_", Name: name, Digest: "sha256:" + strings.Repeat("0", 64)}}
	}
	inputs := func(name string) *desiredInputs {
		return &desiredInputs{gen: c.fleet.desiredGen.Add(1), fns: fn(name), labelled: map[string]bool{}, gone: map[string]bool{}}
	}
	names := func() []string {
		fs, _ := a.state.Desired()
		var out []string
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	waitFor(t, "the store's set", func() bool { return slices.Equal(names(), []string{"newer"}) })
	older, newer := inputs("older"), inputs("newer")
	c.fleet.syncDesired(t.Context(), s, newer)
	c.fleet.syncDesired(t.Context(), s, older) // it read first, but comes last
	waitFor(t, "the newer set", func() bool { return slices.Equal(names(), []string{"newer"}) })
	time.Sleep(300 * time.Millisecond)
	if got := names(); !slices.Equal(got, []string{"newer"}) {
		t.Fatalf("desired set %v: the older read was sent after the newer", got)
	}
}
