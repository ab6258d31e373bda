package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

// versionsOf returns the numbers and digests of a function's versions.
func versionsOf(t *testing.T, s store.Store, module, name string) (numbers []int64, digests []string) {
	t.Helper()
	vs, err := s.FunctionVersions(t.Context(), module, name)
	noErr(t, "FunctionVersions "+module+"/"+name, err)
	for _, v := range vs {
		numbers = append(numbers, v.Number)
		digests = append(digests, v.Digest)
	}
	return numbers, digests
}

// testVersions: a function has itself as version 1 until updated; every
// update adds a version, newest first, with its code, ABI, size, settings
// (config included) and time.
func testVersions(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	c1, d1 := Code("v1")
	c2, d2 := Code("v2, longer")
	orig := mustCreateFunction(t, s, "m", "f", c1)

	vs, err := s.FunctionVersions(ctx, "m", "f")
	noErr(t, "FunctionVersions before any update", err)
	equal(t, "versions before any update", vs, []store.FunctionVersion{{
		Number: 1, Digest: d1, Size: int64(len(c1)), ABI: orig.ABI, Spec: orig.Spec, Created: orig.Updated,
	}})

	upd := newFunction("m", "f", c2)
	upd.ABI = "wasi-command"
	upd.Spec = fnspec.Spec{
		Metadata: fnspec.Metadata{Tag: "x"},
		Config: fnspec.Config{Env: map[string]string{"A": "1"}, Secrets: []string{"key"},
			AllowHosts: []string{"example.com", "*.example.org:8443"}},
	}
	_, err = s.UpdateFunction(ctx, upd, c2)
	noErr(t, "UpdateFunction", err)
	now, err := s.GetFunction(ctx, "m", "f")
	noErr(t, "GetFunction", err)
	// The same code once more: a version too.
	_, err = s.UpdateFunction(ctx, newFunction("m", "f", c1), c1)
	noErr(t, "UpdateFunction back to v1's code", err)

	check := func(s store.Store) {
		t.Helper()
		vs, err := s.FunctionVersions(ctx, "m", "f")
		noErr(t, "FunctionVersions", err)
		if len(vs) != 3 {
			t.Fatalf("got %d versions, want 3: %+v", len(vs), vs)
		}
		equal(t, "version 2", vs[1], store.FunctionVersion{
			Number: 2, Digest: d2, Size: int64(len(c2)), ABI: "wasi-command", Spec: upd.Spec, Created: now.Updated,
		})
		equal(t, "version 1", vs[2], store.FunctionVersion{
			Number: 1, Digest: d1, Size: int64(len(c1)), ABI: orig.ABI, Spec: orig.Spec, Created: orig.Updated,
		})
		if vs[0].Number != 3 || vs[0].Digest != d1 {
			t.Fatalf("newest version = %d %s, want 3 %s", vs[0].Number, vs[0].Digest, d1)
		}
		cur, err := s.GetFunction(ctx, "m", "f")
		noErr(t, "GetFunction", err)
		if !vs[0].Created.Equal(cur.Updated) {
			t.Fatalf("newest version created %v, function updated %v", vs[0].Created, cur.Updated)
		}
		wantCode(t, s, d2, c2) // version 2 keeps it
		wantCodeCount(t, s, 2)
	}
	check(s)
	noErr(t, "Close", s.Close())
	check(reopen(t))
}

// testVersionsBound: PruneFunctionVersions keeps the newest, never fewer
// than one, and the code of removed versions goes when nothing else uses
// it; numbers go on after a prune.
func testVersionsBound(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	codes := make([][]byte, 6)
	digests := make([]string, 6)
	for i := range codes {
		codes[i], digests[i] = Code(string(rune('a' + i)))
	}
	mustCreateFunction(t, s, store.DefaultModule, "f", codes[0])
	mustCreateFunction(t, s, store.DefaultModule, "other", codes[1]) // keeps b's code
	for i := 1; i < 5; i++ {
		_, err := s.UpdateFunction(ctx, newFunction(store.DefaultModule, "f", codes[i]), codes[i])
		noErr(t, "UpdateFunction", err)
	}
	nums, _ := versionsOf(t, s, store.DefaultModule, "f")
	equal(t, "versions", nums, []int64{5, 4, 3, 2, 1})
	wantCodeCount(t, s, 5)

	removed, err := s.PruneFunctionVersions(ctx, store.DefaultModule, "f", 3)
	noErr(t, "PruneFunctionVersions 3", err)
	equal(t, "removed", removed, []string{digests[1], digests[0]})
	nums, ds := versionsOf(t, s, store.DefaultModule, "f")
	equal(t, "versions after prune", nums, []int64{5, 4, 3})
	equal(t, "digests after prune", ds, []string{digests[4], digests[3], digests[2]})
	wantNoCode(t, s, digests[0])
	wantCode(t, s, digests[1], codes[1]) // "other" uses it
	wantCodeCount(t, s, 4)

	removed, err = s.PruneFunctionVersions(ctx, store.DefaultModule, "f", 3)
	noErr(t, "PruneFunctionVersions again", err)
	equal(t, "removed by a second prune", removed, []string{})

	_, err = s.UpdateFunction(ctx, newFunction(store.DefaultModule, "f", codes[5]), codes[5])
	noErr(t, "UpdateFunction after prune", err)
	removed, err = s.PruneFunctionVersions(ctx, store.DefaultModule, "f", 0) // counts as 1
	noErr(t, "PruneFunctionVersions 0", err)
	equal(t, "removed keeping 0", removed, []string{digests[4], digests[3], digests[2]})
	nums, _ = versionsOf(t, s, store.DefaultModule, "f")
	equal(t, "versions keeping 0", nums, []int64{6})
	wantCodeCount(t, s, 2)

	_, err = s.PruneFunctionVersions(ctx, store.DefaultModule, "missing", 1)
	wantErr(t, "PruneFunctionVersions missing function", err, store.ErrNotFound)
	_, err = s.PruneFunctionVersions(ctx, "missing", "f", 1)
	wantErr(t, "PruneFunctionVersions missing module", err, store.ErrNotFound)
	_, err = s.FunctionVersions(ctx, store.DefaultModule, "missing")
	wantErr(t, "FunctionVersions missing function", err, store.ErrNotFound)
	_, err = s.FunctionVersions(ctx, "missing", "f")
	wantErr(t, "FunctionVersions missing module", err, store.ErrNotFound)
}

// testVersionsDeleted: deleting a function or its module deletes its
// versions and their code; a module rename keeps them; a function made
// again starts at version 1.
func testVersionsDeleted(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	a, da := Code("a")
	b, db := Code("b")
	c, dc := Code("c")
	for _, name := range []string{"f", "g"} {
		mustCreateFunction(t, s, "m", name, a)
		_, err := s.UpdateFunction(ctx, newFunction("m", name, b), b)
		noErr(t, "UpdateFunction "+name, err)
	}
	mustCreateFunction(t, s, store.DefaultModule, "h", c)
	_, err := s.UpdateFunction(ctx, newFunction(store.DefaultModule, "h", a), a)
	noErr(t, "UpdateFunction h", err)

	noErr(t, "RenameModule", s.RenameModule(ctx, "m", "n"))
	nums, _ := versionsOf(t, s, "n", "f")
	equal(t, "versions after rename", nums, []int64{2, 1})

	_, err = s.DeleteFunction(ctx, "n", "f")
	noErr(t, "DeleteFunction f", err)
	wantCode(t, s, da, a)
	wantCode(t, s, db, b)
	noErr(t, "DeleteModule", s.DeleteModule(ctx, "n"))
	wantNoCode(t, s, db)
	wantCode(t, s, da, a) // h uses it
	wantCode(t, s, dc, c) // h's version 1 keeps it
	wantCodeCount(t, s, 2)

	_, err = s.DeleteFunction(ctx, store.DefaultModule, "h")
	noErr(t, "DeleteFunction h", err)
	wantCodeCount(t, s, 0)

	mustCreateModule(t, s, "n")
	mustCreateFunction(t, s, "n", "f", c)
	nums, _ = versionsOf(t, s, "n", "f")
	equal(t, "versions of a function made again", nums, []int64{1})
	_, err = s.UpdateFunction(ctx, newFunction("n", "f", a), a)
	noErr(t, "UpdateFunction", err)
	nums, _ = versionsOf(t, s, "n", "f")
	equal(t, "versions after an update", nums, []int64{2, 1})
}

// testConcurrentVersions updates one function, prunes its versions and
// reads them at once: numbers stay unique and descending, every kept
// version's code is there, and deleting the function leaves no code.
func testConcurrentVersions(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	first, _ := Code("first")
	mustCreateFunction(t, s, store.DefaultModule, "f", first)
	var (
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	parallel(goroutines/2, func(i int) {
		code, _ := Code(fmt.Sprintf("c%d", i%3))
		for range 4 {
			var err error
			switch i % 3 {
			case 0:
				_, err = s.PruneFunctionVersions(ctx, store.DefaultModule, "f", 2)
			case 1:
				_, err = s.FunctionVersions(ctx, store.DefaultModule, "f")
			default:
				_, err = s.UpdateFunction(ctx, newFunction(store.DefaultModule, "f", code), code)
			}
			if err != nil {
				fail(err)
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	vs, err := s.FunctionVersions(ctx, store.DefaultModule, "f")
	noErr(t, "FunctionVersions", err)
	for i, v := range vs {
		if i > 0 && v.Number >= vs[i-1].Number {
			t.Fatalf("versions not descending: %d after %d", v.Number, vs[i-1].Number)
		}
		if _, err := s.Code(ctx, v.Digest); err != nil {
			t.Fatalf("code of kept version %d: %v", v.Number, err)
		}
	}
	_, err = s.DeleteFunction(ctx, store.DefaultModule, "f")
	noErr(t, "DeleteFunction", err)
	wantCodeCount(t, s, 0)
}

// testKeptDigests: for every function with earlier versions, the distinct
// digests of those versions that are not its current code, newest first,
// at most n; functions without any are absent; one call for them all.
func testKeptDigests(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	mustCreateModule(t, s, "n")
	ca, da := Code("kept a")
	cb, db := Code("kept b")
	cc, _ := Code("kept c")
	mustCreateFunction(t, s, "m", "f", ca)
	for _, c := range [][]byte{cb, ca, cc} { // versions: a, b, a, c (current)
		_, err := s.UpdateFunction(ctx, newFunction("m", "f", c), c)
		noErr(t, "UpdateFunction", err)
	}
	mustCreateFunction(t, s, "n", "g", cb) // one version: nothing kept
	mustCreateFunction(t, s, "n", "h", cb)
	_, err := s.UpdateFunction(ctx, newFunction("n", "h", cb), cb) // same code again: nothing other than current
	noErr(t, "UpdateFunction with the same code", err)

	got, err := s.KeptDigests(ctx, 2)
	noErr(t, "KeptDigests", err)
	equal(t, "KeptDigests(2)", got, map[string][]string{"m/f": {da, db}})
	got, err = s.KeptDigests(ctx, 1)
	noErr(t, "KeptDigests(1)", err)
	equal(t, "KeptDigests(1)", got, map[string][]string{"m/f": {da}})
}
