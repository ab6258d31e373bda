package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// ChangeRecorder watches a store's change feed for a test: it keeps every
// change reported, in order.
type ChangeRecorder struct {
	mu   sync.Mutex
	seen []store.Change
	done chan error
}

// RecordChanges runs WatchChanges on feed until the test ends (its error
// then must be the context's).
func RecordChanges(t testing.TB, feed store.ChangeFeed) *ChangeRecorder {
	t.Helper()
	r := &ChangeRecorder{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r.done <- feed.WatchChanges(ctx, func(c store.Change) {
			r.mu.Lock()
			r.seen = append(r.seen, c)
			r.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != context.Canceled {
				t.Errorf("WatchChanges returned %v after its context was cancelled, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("WatchChanges did not return within 10s of its context's end")
		}
	})
	return r
}

// Len is how many changes were reported so far.
func (r *ChangeRecorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// Since returns the changes reported after the first n.
func (r *ChangeRecorder) Since(n int) []store.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen[min(n, len(r.seen)):])
}

// Wait waits up to d for every change of want to be reported after the
// first n, and returns how many were reported when they all were.
func (r *ChangeRecorder) Wait(t testing.TB, n int, d time.Duration, want ...store.Change) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		got := slices.Clone(r.seen[min(n, len(r.seen)):])
		total := len(r.seen)
		r.mu.Unlock()
		missing := []store.Change{}
		for _, w := range want {
			if !slices.Contains(got, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return total
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: changes %v not reported; reported: %v", d, missing, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// feedWait bounds how long a change takes to be reported.
const feedWait = 10 * time.Second

// testChangeFeed: the ChangeFeed contract. A watcher gets ChangeAll first,
// then each committed change with its kind and key; a failed write and a
// TouchAgent report nothing (proven by a later change reported after it:
// a feed reports in commit order); every watcher gets every change.
func testChangeFeed(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	feed, ok := s.(store.ChangeFeed)
	if !ok {
		t.Fatalf("%T is no store.ChangeFeed: controllers sharing it would not learn each other's changes", s)
	}
	ctx := t.Context()
	r := RecordChanges(t, feed)
	n := r.Wait(t, 0, feedWait, store.Change{Kind: store.ChangeAll})
	if first := r.Since(0)[0]; first.Kind != store.ChangeAll {
		t.Fatalf("first change %v, want ChangeAll", first)
	}
	other := RecordChanges(t, feed) // a second watcher sees the same
	otherStart := other.Wait(t, 0, feedWait, store.Change{Kind: store.ChangeAll})

	ch := func(k store.ChangeKind, key string) store.Change { return store.Change{Kind: k, Key: key} }
	step := func(what string, err error, want ...store.Change) {
		t.Helper()
		noErr(t, what, err)
		n = r.Wait(t, n, feedWait, want...)
	}
	// none: the write reported nothing of kind; marker is a change made
	// after it, which the feed reports after anything the write reported.
	marker := 0
	none := func(what string, kind store.ChangeKind) {
		t.Helper()
		marker++
		m := ch(store.ChangeModules, fmt.Sprintf("marker%d", marker))
		noErr(t, "marker module", s.CreateModule(ctx, m.Key, ""))
		from := n
		n = r.Wait(t, n, feedWait, m)
		for _, c := range r.Since(from) {
			if c == m {
				break
			}
			if c.Kind == kind {
				t.Fatalf("%s reported %v", what, c)
			}
		}
	}

	step("CreateModule", s.CreateModule(ctx, "m", ""), ch(store.ChangeModules, "m"))
	wantErr(t, "CreateModule taken", s.CreateModule(ctx, "m", ""), store.ErrExists)
	code, _ := Code("feed1")
	fn, err := s.CreateFunction(ctx, newFunction("m", "f", code), code)
	step("CreateFunction", err, ch(store.ChangeFunctions, "m/f"))
	_, err = s.CreateFunction(ctx, newFunction("m", "f", code), code)
	wantErr(t, "CreateFunction taken", err, store.ErrExists)
	none("a failed CreateFunction", store.ChangeFunctions)
	code2, _ := Code("feed2")
	_, err = s.UpdateFunction(ctx, newFunction("m", "f", code2), code2)
	step("UpdateFunction", err, ch(store.ChangeFunctions, "m/f"))
	_, err = s.PruneFunctionVersions(ctx, "m", "f", 1)
	step("PruneFunctionVersions", err, ch(store.ChangeFunctions, "m/f"))
	if ss, ok := s.(store.SecretStore); ok {
		_, err = ss.PutSecret(ctx, store.Secret{Module: "m", Name: "K", KeyID: "k1", Sealed: []byte("s1")})
		step("PutSecret", err, ch(store.ChangeSecrets, "m/K"))
		_, err = ss.RewrapSecret(ctx, store.Secret{Module: "m", Name: "K", KeyID: "k2", Sealed: []byte("s2")}, []byte("s1"))
		step("RewrapSecret", err, ch(store.ChangeSecrets, "m/K"))
		step("DeleteSecret", ss.DeleteSecret(ctx, "m", "K"), ch(store.ChangeSecrets, "m/K"))
	}
	step("RenameModule", s.RenameModule(ctx, "m", "m2"), ch(store.ChangeModules, "m"), ch(store.ChangeModules, "m2"))
	_, err = s.DeleteFunction(ctx, "m2", fn.Name)
	step("DeleteFunction", err, ch(store.ChangeFunctions, "m2/f"))
	mustCreateFunction(t, s, "m2", "g", code)
	step("DeleteModule", s.DeleteModule(ctx, "m2"), ch(store.ChangeModules, "m2"))

	_, err = s.CreateSubject(ctx, store.Subject{Name: "sub", TokenHash: tokenHash("sub1")})
	step("CreateSubject", err, ch(store.ChangeSubjects, "sub"))
	step("RotateSubjectToken", s.RotateSubjectToken(ctx, "sub", tokenHash("sub2")), ch(store.ChangeSubjects, "sub"))
	_, err = s.PutScript(ctx, store.Script{Name: "sc", Source: []byte("x"), Owner: "sub"})
	step("PutScript", err, ch(store.ChangeScripts, "sc"))
	step("DeleteSubject", s.DeleteSubject(ctx, "sub"), ch(store.ChangeSubjects, "sub"), ch(store.ChangeScripts, "sc"))

	jt, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_feed", SecretHash: tokenHash("join"), Uses: 2})
	step("CreateJoinToken", err, ch(store.ChangeJoinTokens, jt.ID))
	a, err := s.JoinAgent(ctx, tokenHash("join"), store.Agent{ID: agentID(1), Name: "edge", CredentialHash: tokenHash("cred1")})
	step("JoinAgent", err, ch(store.ChangeJoinTokens, jt.ID), ch(store.ChangeAgents, a.ID))
	noErr(t, "TouchAgent", s.TouchAgent(ctx, a.ID, "edge-renamed", []string{"zone=x"}, time.Now()))
	none("TouchAgent", store.ChangeAgents)
	_, err = s.SetAgentControl(ctx, a.ID, store.AgentControl{Cordoned: true, Labels: []string{"tag=t"}})
	step("SetAgentControl", err, ch(store.ChangeAgents, a.ID))
	step("DeleteAgent", s.DeleteAgent(ctx, a.ID), ch(store.ChangeAgents, a.ID))
	b, err := s.CreateAgent(ctx, store.Agent{ID: agentID(2), Name: "edge2", CredentialHash: tokenHash("cred2")})
	step("CreateAgent", err, ch(store.ChangeAgents, b.ID))
	step("DeleteJoinToken", s.DeleteJoinToken(ctx, jt.ID), ch(store.ChangeJoinTokens, jt.ID))

	// Activations and the quarantine are no kind of change.
	_, err = s.RecordActivation(ctx, store.Activation{ID: "01JFEEDFEEDFEEDFEEDFEEDFEE", Module: "_", Function: "f", Started: time.Now()}, nil)
	noErr(t, "RecordActivation", err)
	none("RecordActivation", store.ChangeFunctions)

	// The other watcher got all of it too.
	all := r.Since(1)
	other.Wait(t, otherStart, feedWait, all...)
}
