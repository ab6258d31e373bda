package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/wispfn/wisp/controller/store"
)

// testOwners: modules and scripts keep their owner ("" the admin) through
// renames and reopens; activations take their module's owner when they are
// recorded and keep it when the module's name passes to another subject.
func testOwners(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	wantErr(t, "CreateModule of no subject", s.CreateModule(ctx, "a_mod", "alice"), store.ErrNotFound)
	_, err := s.PutScript(ctx, store.Script{Name: "a_s", Source: []byte("x"), Owner: "alice"})
	wantErr(t, "PutScript of no subject", err, store.ErrNotFound)
	for _, name := range []string{"alice", "bob"} {
		_, err := s.CreateSubject(ctx, store.Subject{Name: name, TokenHash: tokenHash(name)})
		noErr(t, "CreateSubject", err)
	}
	noErr(t, "CreateModule a_mod", s.CreateModule(ctx, "a_mod", "alice"))
	noErr(t, "CreateModule b_mod", s.CreateModule(ctx, "b_mod", "bob"))
	mustCreateModule(t, s, "admin_mod")
	wantErr(t, "CreateModule taken by another owner", s.CreateModule(ctx, "a_mod", "bob"), store.ErrExists)

	mods, err := s.ListModules(ctx)
	noErr(t, "ListModules", err)
	equal(t, "ListModules", mods, []store.Module{
		{Name: store.DefaultModule}, {Name: "a_mod", Owner: "alice"}, {Name: "admin_mod"}, {Name: "b_mod", Owner: "bob"}})
	m, err := s.GetModule(ctx, "a_mod")
	noErr(t, "GetModule", err)
	equal(t, "GetModule", m, store.Module{Name: "a_mod", Owner: "alice", Functions: []string{}})
	owner, err := s.ModuleOwner(ctx, store.DefaultModule)
	noErr(t, "ModuleOwner _", err)
	equal(t, "owner of the default module", owner, "")
	_, err = s.ModuleOwner(ctx, "missing")
	wantErr(t, "ModuleOwner missing", err, store.ErrNotFound)

	noErr(t, "RenameModule", s.RenameModule(ctx, "a_mod", "a_mod2"))
	owner, err = s.ModuleOwner(ctx, "a_mod2")
	noErr(t, "ModuleOwner after rename", err)
	equal(t, "owner after rename", owner, "alice")

	_, err = s.PutScript(ctx, store.Script{Name: "a_s", Source: []byte("x"), Owner: "alice"})
	noErr(t, "PutScript", err)
	_, err = s.PutScript(ctx, store.Script{Name: "admin_s", Source: []byte("y")})
	noErr(t, "PutScript", err)

	// Activations: the caller's Owner is ignored, the module's is kept.
	a := newActivation(1, "a_mod2", "f")
	a.Owner = "mallory"
	mustRecord(t, s, a, nil)
	mustRecord(t, s, newActivation(2, "b_mod", "f"), nil)
	mustRecord(t, s, newActivation(3, "admin_mod", "f"), nil)
	mustRecord(t, s, newActivation(4, "gone", "f"), nil) // no such module: the admin's
	mustRecordBatch(t, s, []store.ActivationWithSinks{{Activation: newActivation(5, "a_mod2", "g")}, {Activation: newActivation(6, "b_mod", "g")}}, 2)

	// alice's module goes and bob takes its name: what was recorded stays alice's.
	noErr(t, "DeleteModule", s.DeleteModule(ctx, "a_mod2"))
	noErr(t, "CreateModule again", s.CreateModule(ctx, "a_mod2", "bob"))
	mustRecord(t, s, newActivation(7, "a_mod2", "f"), nil)

	check := func(s store.Store) {
		t.Helper()
		for _, c := range []struct {
			owner string
			want  []string
		}{
			{"alice", actIDs(1, 5)},
			{"bob", actIDs(2, 6, 7)},
			{"", actIDs(1, 2, 3, 4, 5, 6, 7)},
			{"nobody", []string{}},
		} {
			as, err := s.ListActivations(ctx, store.ActivationFilter{Owner: c.owner})
			noErr(t, "ListActivations", err)
			equal(t, "activations of "+c.owner, ids(as), c.want)
		}
		as, err := s.ListActivations(ctx, store.ActivationFilter{Owner: "bob", Module: "a_mod2"})
		noErr(t, "ListActivations", err)
		equal(t, "bob's activations of a_mod2", ids(as), actIDs(7))
		for i, want := range map[int]string{1: "alice", 3: "", 4: "", 7: "bob"} {
			got, err := s.GetActivation(ctx, actID(i))
			noErr(t, "GetActivation", err)
			equal(t, "owner of activation "+actID(i), got.Owner, want)
		}
		sc, err := s.GetScript(ctx, "a_s")
		noErr(t, "GetScript", err)
		equal(t, "script owner", sc.Owner, "alice")
		scs, err := s.ListScripts(ctx)
		noErr(t, "ListScripts", err)
		equal(t, "ListScripts owners", []string{scs[0].Owner, scs[1].Owner}, []string{"alice", ""})
		owner, err := s.ModuleOwner(ctx, "b_mod")
		noErr(t, "ModuleOwner", err)
		equal(t, "owner of b_mod", owner, "bob")
	}
	check(s)
	noErr(t, "Close", s.Close())
	s = reopen(t)
	check(s)
}

// testSubjectRotateDelete: a rotated token replaces the old one; a subject
// that owns a module cannot be deleted; a deleted subject's scripts go with
// it and its activations pass to the admin.
func testSubjectRotateDelete(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	alice, err := s.CreateSubject(ctx, store.Subject{Name: "alice", TokenHash: tokenHash("a1")})
	noErr(t, "CreateSubject", err)
	_, err = s.CreateSubject(ctx, store.Subject{Name: "bob", TokenHash: tokenHash("b1")})
	noErr(t, "CreateSubject", err)

	noErr(t, "RotateSubjectToken", s.RotateSubjectToken(ctx, "alice", tokenHash("a2")))
	_, err = s.SubjectByTokenHash(ctx, tokenHash("a1"))
	wantErr(t, "old token after rotate", err, store.ErrNotFound)
	got, err := s.SubjectByTokenHash(ctx, tokenHash("a2"))
	noErr(t, "new token after rotate", err)
	alice.TokenHash = tokenHash("a2")
	equal(t, "subject after rotate", got, alice)
	wantErr(t, "RotateSubjectToken to bob's", s.RotateSubjectToken(ctx, "alice", tokenHash("b1")), store.ErrExists)
	wantErr(t, "RotateSubjectToken missing", s.RotateSubjectToken(ctx, "nobody", tokenHash("x")), store.ErrNotFound)
	got, err = s.SubjectByTokenHash(ctx, tokenHash("b1"))
	noErr(t, "bob's token after a refused rotate", err)
	equal(t, "bob", got.Name, "bob")

	noErr(t, "CreateModule", s.CreateModule(ctx, "a_mod", "alice"))
	_, err = s.PutScript(ctx, store.Script{Name: "a_s", Source: []byte("x"), Owner: "alice"})
	noErr(t, "PutScript", err)
	mustRecord(t, s, newActivation(1, "a_mod", "f"), nil)

	wantErr(t, "DeleteSubject owning a module", s.DeleteSubject(ctx, "alice"), store.ErrOwner)
	_, err = s.SubjectByTokenHash(ctx, tokenHash("a2"))
	noErr(t, "token after a refused delete", err)
	_, err = s.GetScript(ctx, "a_s")
	noErr(t, "script after a refused delete", err)

	_, err = s.CreateSubject(ctx, store.Subject{Name: "carol", TokenHash: tokenHash("c1")})
	noErr(t, "CreateSubject", err)
	noErr(t, "CreateModule", s.CreateModule(ctx, "c_mod", "carol"))
	_, err = s.PutScript(ctx, store.Script{Name: "c_s", Source: []byte("x"), Owner: "carol"})
	noErr(t, "PutScript", err)
	_, err = s.PutScript(ctx, store.Script{Name: "admin_s", Source: []byte("x")})
	noErr(t, "PutScript", err)
	mustRecord(t, s, newActivation(2, "c_mod", "f"), nil)
	noErr(t, "DeleteModule", s.DeleteModule(ctx, "c_mod"))
	noErr(t, "DeleteSubject", s.DeleteSubject(ctx, "carol"))
	_, err = s.GetScript(ctx, "c_s")
	wantErr(t, "a deleted subject's script", err, store.ErrNotFound)
	scs, err := s.ListScripts(ctx)
	noErr(t, "ListScripts", err)
	equal(t, "scripts left", len(scs), 2) // a_s, admin_s
	wantErr(t, "DeleteSubject again", s.DeleteSubject(ctx, "carol"), store.ErrNotFound)
	_, err = s.SubjectByTokenHash(ctx, tokenHash("c1"))
	wantErr(t, "token of a deleted subject", err, store.ErrNotFound)
	subs, err := s.ListSubjects(ctx)
	noErr(t, "ListSubjects", err)
	equal(t, "subjects", len(subs), 2)
	a, err := s.GetActivation(ctx, actID(2))
	noErr(t, "GetActivation", err)
	equal(t, "owner of a deleted subject's activation", a.Owner, "")
	a, err = s.GetActivation(ctx, actID(1))
	noErr(t, "GetActivation", err)
	equal(t, "owner of alice's activation", a.Owner, "alice")

	// A new carol does not inherit the old one's records.
	_, err = s.CreateSubject(ctx, store.Subject{Name: "carol", TokenHash: tokenHash("c2")})
	noErr(t, "CreateSubject carol again", err)
	as, err := s.ListActivations(ctx, store.ActivationFilter{Owner: "carol"})
	noErr(t, "ListActivations", err)
	equal(t, "the new carol's activations", ids(as), []string{})
}

// testConcurrentDeleteSubject races a subject's delete with its module's
// create: either the module is made and the delete refused, or the delete
// wins and the create fails; never a module whose owner is gone.
func testConcurrentDeleteSubject(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	for i := range 20 {
		name := fmt.Sprintf("s%d", i)
		_, err := s.CreateSubject(ctx, store.Subject{Name: name, TokenHash: tokenHash(name)})
		noErr(t, "CreateSubject", err)
		var createErr, deleteErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); createErr = s.CreateModule(ctx, "m_"+name, name) }()
		go func() { defer wg.Done(); deleteErr = s.DeleteSubject(ctx, name) }()
		wg.Wait()
		_, ownerErr := s.ModuleOwner(ctx, "m_"+name)
		switch {
		case createErr == nil && errors.Is(deleteErr, store.ErrOwner) && ownerErr == nil:
		case errors.Is(createErr, store.ErrNotFound) && deleteErr == nil && errors.Is(ownerErr, store.ErrNotFound):
		default:
			t.Fatalf("round %d: create %v, delete %v, module's owner %v", i, createErr, deleteErr, ownerErr)
		}
	}
}
