// Package storetest is the contract test suite of store.Store: every
// implementation (Postgres, Embedded, and any fake a test wants to trust)
// runs Run and so keeps exactly the same semantics.
//
// It is test support only: production code must never import it, and it
// never knows which implementation it is testing. Checks that need more than
// the Store interface go through small optional interfaces (CodeCounter).
package storetest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

// Opener opens a fresh, empty store for one test and registers (with
// t.Cleanup) whatever closing and checking the implementation needs. reopen
// opens the same data again; the suite calls it only after closing s, and the
// store it returns must be cleaned up by the Opener too.
type Opener func(t *testing.T) (s store.Store, reopen func(t *testing.T) store.Store)

// CodeCounter is implemented by stores that can count their stored code
// blobs. The suite uses it to check that code is stored once per digest and
// dropped when no function uses it; without it those checks fall back to
// Store.Code alone.
type CodeCounter interface {
	CodeCount(ctx context.Context) (int, error)
}

// Run runs the contract suite against the stores open makes. Every subtest
// gets its own store and runs in parallel with the others.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, reopen func(*testing.T) store.Store)
	}{
		{"DefaultModule", testDefaultModule},
		{"Ping", testPing},
		{"Modules", testModules},
		{"RenameKeepsFunctions", testRenameKeepsFunctions},
		{"DeleteModuleDeletesFunctions", testDeleteModuleDeletesFunctions},
		{"Functions", testFunctions},
		{"FunctionSpec", testFunctionSpec},
		{"UpdateFunction", testUpdateFunction},
		{"CodeOncePerDigest", testCodeOncePerDigest},
		{"DigestMismatch", testDigestMismatch},
		{"Subjects", testSubjects},
		{"Scripts", testScripts},
		{"Owners", testOwners},
		{"SubjectRotateDelete", testSubjectRotateDelete},
		{"ConcurrentDeleteSubject", testConcurrentDeleteSubject},
		{"JoinTokens", testJoinTokens},
		{"JoinTokenExpires", testJoinTokenExpires},
		{"JoinTokenUses", testJoinTokenUses},
		{"Agents", testAgents},
		{"TouchAgent", testTouchAgent},
		{"AgentControl", testAgentControl},
		{"DeleteAgent", testDeleteAgent},
		{"FailedWritesChangeNothing", testFailedWritesChangeNothing},
		{"ConcurrentDuplicateCreate", testConcurrentDuplicateCreate},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentCodeChurn", testConcurrentCodeChurn},
		{"ConcurrentDeleteModule", testConcurrentDeleteModule},
		{"ConcurrentCreateAgent", testConcurrentCreateAgent},
		{"ConcurrentDuplicateAgent", testConcurrentDuplicateAgent},
		{"Reopen", testReopen},
		{"Secrets", testSecrets},
		{"ActivationRecordGet", testActivationRecordGet},
		{"ActivationDuplicate", testActivationDuplicate},
		{"ActivationBatch", testActivationBatch},
		{"ActivationFilters", testActivationFilters},
		{"ActivationLimits", testActivationLimits},
		{"ActivationListFilters", testActivationListFilters},
		{"ActivationPagingConcurrent", testActivationPagingConcurrent},
		{"ActivationRecordedOrder", testActivationRecordedOrder},
		{"ActivationDeleteFunction", testActivationDeleteFunction},
		{"DeliveriesQueued", testDeliveriesQueued},
		{"DeliveryCopiesSink", testDeliveryCopiesSink},
		{"PendingDeliveries", testPendingDeliveries},
		{"DeliveryTransitions", testDeliveryTransitions},
		{"ConcurrentRecord", testConcurrentRecord},
		{"ActivationsReopen", testActivationsReopen},
		{"ActivationTruncated", testActivationTruncated},
		{"ActivationLogs", testActivationLogs},
		{"ActivationLogsPruned", testActivationLogsPruned},
		{"PruneBefore", testPruneBefore},
		{"PruneBeyond", testPruneBeyond},
		{"PruneBeyondPerFunction", testPruneBeyondPerFunction},
		{"ActivationVolume", testActivationVolume},
		{"Quarantine", testQuarantine},
		{"Versions", testVersions},
		{"VersionsBound", testVersionsBound},
		{"VersionsDeleted", testVersionsDeleted},
		{"KeptDigests", testKeptDigests},
		{"ConcurrentVersions", testConcurrentVersions},
		{"ConcurrentQuarantine", testConcurrentQuarantine},
		{"HasCode", testHasCode},
		{"ChangeFeed", testChangeFeed},
		{"Membership", testMembership},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, reopen := open(t)
			tt.fn(t, s, reopen)
		})
	}
}

// Code returns distinct fake wasm bytes for seed and their digest. The store
// does not parse code, only hashes it.
func Code(seed string) (code []byte, digest string) {
	code = append([]byte("\x00asm\x01\x00\x00\x00"), seed...)
	sum := sha256.Sum256(code)
	return code, "sha256:" + hex.EncodeToString(sum[:])
}

// newFunction returns a function of module named name using code.
func newFunction(module, name string, code []byte) store.Function {
	sum := sha256.Sum256(code)
	return store.Function{
		Module: module,
		Name:   name,
		Digest: "sha256:" + hex.EncodeToString(sum[:]),
		ABI:    "funless-v1",
		Spec: fnspec.Spec{
			Events:   []fnspec.Event{{Type: "mqtt", Params: fnspec.EventParams{Topic: "t/" + name, Local: true}}},
			Sinks:    []fnspec.Sink{{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://couch/db"}}},
			Metadata: fnspec.Metadata{Tag: name},
		},
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustCreateModule(t *testing.T, s store.Store, name string) {
	t.Helper()
	noErr(t, "CreateModule "+name, s.CreateModule(t.Context(), name, ""))
}

func mustCreateFunction(t *testing.T, s store.Store, module, name string, code []byte) store.Function {
	t.Helper()
	fn, err := s.CreateFunction(t.Context(), newFunction(module, name, code), code)
	noErr(t, "CreateFunction "+module+"/"+name, err)
	return fn
}

func moduleFunctions(t *testing.T, s store.Store, module string) []string {
	t.Helper()
	m, err := s.GetModule(t.Context(), module)
	noErr(t, "GetModule "+module, err)
	if m.Name != module {
		t.Fatalf("GetModule(%q).Name = %q", module, m.Name)
	}
	if m.Functions == nil {
		t.Fatalf("GetModule(%q).Functions is nil, want a slice", module)
	}
	return m.Functions
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

// codeCount returns the number of stored code blobs, or -1 when the store
// cannot count them.
func codeCount(t *testing.T, s store.Store) int {
	t.Helper()
	c, ok := s.(CodeCounter)
	if !ok {
		return -1
	}
	n, err := c.CodeCount(t.Context())
	noErr(t, "CodeCount", err)
	return n
}

func wantCodeCount(t *testing.T, s store.Store, want int) {
	t.Helper()
	if got := codeCount(t, s); got >= 0 && got != want {
		t.Fatalf("CodeCount = %d, want %d", got, want)
	}
}

func wantCode(t *testing.T, s store.Store, digest string, code []byte) {
	t.Helper()
	got, err := s.Code(t.Context(), digest)
	noErr(t, "Code "+digest, err)
	equal(t, "Code "+digest, got, code)
}

func wantNoCode(t *testing.T, s store.Store, digest string) {
	t.Helper()
	_, err := s.Code(t.Context(), digest)
	wantErr(t, "Code of unused digest "+digest, err, store.ErrNotFound)
}

// wantTime checks that a store-set timestamp lies in [before, after], is UTC
// and carries no more than microsecond precision.
func wantTime(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.Before(before.Truncate(time.Microsecond)) || got.After(after) {
		t.Fatalf("%s = %v, want between %v and %v", what, got, before, after)
	}
	if got.Location() != time.UTC {
		t.Fatalf("%s = %v, want UTC", what, got)
	}
	if got.Truncate(time.Microsecond) != got {
		t.Fatalf("%s = %v has sub-microsecond precision", what, got)
	}
}

func testDefaultModule(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mods, err := s.ListModules(ctx)
	noErr(t, "ListModules", err)
	equal(t, "modules of a new store", store.ModuleNames(mods), []string{store.DefaultModule})
	equal(t, "functions of the default module", moduleFunctions(t, s, store.DefaultModule), []string{})

	wantErr(t, "CreateModule _", s.CreateModule(ctx, store.DefaultModule, ""), store.ErrExists)
	wantErr(t, "DeleteModule _", s.DeleteModule(ctx, store.DefaultModule), store.ErrDefaultModule)
	wantErr(t, "RenameModule _ -> x", s.RenameModule(ctx, store.DefaultModule, "x"), store.ErrDefaultModule)
	mustCreateModule(t, s, "m")
	wantErr(t, "RenameModule m -> _", s.RenameModule(ctx, "m", store.DefaultModule), store.ErrDefaultModule)
	wantErr(t, "RenameModule missing -> _", s.RenameModule(ctx, "missing", store.DefaultModule), store.ErrDefaultModule)

	// The default module holds functions like any other.
	code, _ := Code("default")
	mustCreateFunction(t, s, store.DefaultModule, "f", code)
	equal(t, "functions of the default module", moduleFunctions(t, s, store.DefaultModule), []string{"f"})
	mods, err = s.ListModules(ctx)
	noErr(t, "ListModules", err)
	equal(t, "modules", store.ModuleNames(mods), []string{store.DefaultModule, "m"})
}

func testModules(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	// Byte order: digits < upper case < "_" < lower case, whatever the locale.
	for _, name := range []string{"b", "B", "a_1", "a", "Z9", "9z", "A"} {
		mustCreateModule(t, s, name)
	}
	mods, err := s.ListModules(ctx)
	noErr(t, "ListModules", err)
	equal(t, "ListModules", store.ModuleNames(mods), []string{"9z", "A", "B", "Z9", "_", "a", "a_1", "b"})

	wantErr(t, "CreateModule duplicate", s.CreateModule(ctx, "a", ""), store.ErrExists)
	_, err = s.GetModule(ctx, "missing")
	wantErr(t, "GetModule missing", err, store.ErrNotFound)
	wantErr(t, "DeleteModule missing", s.DeleteModule(ctx, "missing"), store.ErrNotFound)
	wantErr(t, "RenameModule missing", s.RenameModule(ctx, "missing", "x"), store.ErrNotFound)
	wantErr(t, "RenameModule missing -> taken", s.RenameModule(ctx, "missing", "a"), store.ErrNotFound)
	wantErr(t, "RenameModule a -> b (taken)", s.RenameModule(ctx, "a", "b"), store.ErrExists)
	noErr(t, "RenameModule a -> a", s.RenameModule(ctx, "a", "a"))

	noErr(t, "RenameModule a -> c", s.RenameModule(ctx, "a", "c"))
	noErr(t, "DeleteModule B", s.DeleteModule(ctx, "B"))
	wantErr(t, "DeleteModule B again", s.DeleteModule(ctx, "B"), store.ErrNotFound)
	mods, err = s.ListModules(ctx)
	noErr(t, "ListModules", err)
	equal(t, "ListModules after rename and delete", store.ModuleNames(mods), []string{"9z", "A", "Z9", "_", "a_1", "b", "c"})

	// A deleted or renamed-away name can be used again.
	mustCreateModule(t, s, "a")
	mustCreateModule(t, s, "B")
	equal(t, "functions of re-created module", moduleFunctions(t, s, "a"), []string{})
}

func testRenameKeepsFunctions(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "old")
	code, digest := Code("rename")
	f1 := mustCreateFunction(t, s, "old", "f1", code)
	mustCreateFunction(t, s, "old", "f2", code)

	noErr(t, "RenameModule", s.RenameModule(ctx, "old", "new"))
	equal(t, "functions after rename", moduleFunctions(t, s, "new"), []string{"f1", "f2"})
	_, err := s.GetModule(ctx, "old")
	wantErr(t, "GetModule old name", err, store.ErrNotFound)
	_, err = s.GetFunction(ctx, "old", "f1")
	wantErr(t, "GetFunction under old name", err, store.ErrNotFound)

	got, err := s.GetFunction(ctx, "new", "f1")
	noErr(t, "GetFunction under new name", err)
	want := f1
	want.Module = "new"
	equal(t, "renamed function", got, want)

	fns, err := s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	if len(fns) != 2 || fns[0].Module != "new" || fns[1].Module != "new" {
		t.Fatalf("ListFunctions after rename = %+v", fns)
	}
	wantCode(t, s, digest, code)
	wantCodeCount(t, s, 1)

	// The old name is free again and starts empty.
	mustCreateModule(t, s, "old")
	equal(t, "functions of re-created old", moduleFunctions(t, s, "old"), []string{})
	mustCreateFunction(t, s, "old", "f1", code)
	equal(t, "functions after rename", moduleFunctions(t, s, "new"), []string{"f1", "f2"})
}

func testDeleteModuleDeletesFunctions(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "gone")
	mustCreateModule(t, s, "kept")
	only, onlyDigest := Code("only in gone")
	shared, sharedDigest := Code("shared")
	mustCreateFunction(t, s, "gone", "a", only)
	mustCreateFunction(t, s, "gone", "b", only)
	mustCreateFunction(t, s, "gone", "c", shared)
	kept := mustCreateFunction(t, s, "kept", "c", shared)
	wantCodeCount(t, s, 2)

	noErr(t, "DeleteModule", s.DeleteModule(ctx, "gone"))
	for _, name := range []string{"a", "b", "c"} {
		_, err := s.GetFunction(ctx, "gone", name)
		wantErr(t, "GetFunction of deleted module", err, store.ErrNotFound)
	}
	fns, err := s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	equal(t, "ListFunctions after DeleteModule", fns, []store.Function{kept})
	wantNoCode(t, s, onlyDigest)
	wantCode(t, s, sharedDigest, shared)
	wantCodeCount(t, s, 1)

	// A module re-created under the same name does not resurrect anything.
	mustCreateModule(t, s, "gone")
	equal(t, "functions of re-created module", moduleFunctions(t, s, "gone"), []string{})
}

func testFunctions(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	code, digest := Code("functions")

	before := time.Now()
	fn, err := s.CreateFunction(ctx, newFunction("m", "f", code), code)
	after := time.Now()
	noErr(t, "CreateFunction", err)
	wantTime(t, "Created", fn.Created, before, after)
	if !fn.Updated.Equal(fn.Created) {
		t.Fatalf("Updated = %v, want Created %v", fn.Updated, fn.Created)
	}
	if fn.Size != int64(len(code)) || fn.Digest != digest || fn.Module != "m" || fn.Name != "f" {
		t.Fatalf("CreateFunction returned %+v", fn)
	}
	got, err := s.GetFunction(ctx, "m", "f")
	noErr(t, "GetFunction", err)
	equal(t, "GetFunction", got, fn)

	_, err = s.CreateFunction(ctx, newFunction("m", "f", code), code)
	wantErr(t, "CreateFunction duplicate", err, store.ErrExists)
	_, err = s.CreateFunction(ctx, newFunction("missing", "f", code), code)
	wantErr(t, "CreateFunction in missing module", err, store.ErrNotFound)
	_, err = s.GetFunction(ctx, "m", "missing")
	wantErr(t, "GetFunction missing function", err, store.ErrNotFound)
	_, err = s.GetFunction(ctx, "missing", "f")
	wantErr(t, "GetFunction missing module", err, store.ErrNotFound)

	// Same name in another module is another function.
	mustCreateModule(t, s, "B")
	other := mustCreateFunction(t, s, "B", "f", code)
	g := mustCreateFunction(t, s, "m", "a", code)
	def := mustCreateFunction(t, s, store.DefaultModule, "z", code)
	fns, err := s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	equal(t, "ListFunctions (module, then name)", fns, []store.Function{other, def, g, fn})
	equal(t, "functions of m", moduleFunctions(t, s, "m"), []string{"a", "f"})

	deleted, err := s.DeleteFunction(ctx, "m", "f")
	noErr(t, "DeleteFunction", err)
	equal(t, "DeleteFunction returns the deleted function", deleted, fn)
	_, err = s.DeleteFunction(ctx, "m", "f")
	wantErr(t, "DeleteFunction again", err, store.ErrNotFound)
	_, err = s.DeleteFunction(ctx, "missing", "f")
	wantErr(t, "DeleteFunction in missing module", err, store.ErrNotFound)
	_, err = s.GetFunction(ctx, "m", "f")
	wantErr(t, "GetFunction deleted", err, store.ErrNotFound)
	equal(t, "functions of m after delete", moduleFunctions(t, s, "m"), []string{"a"})

	// The name is free again.
	mustCreateFunction(t, s, "m", "f", code)

	// An empty store lists an empty, non-nil slice.
	for _, f := range []store.Function{other, def, g, fn} {
		_, err := s.DeleteFunction(ctx, f.Module, f.Name)
		noErr(t, "DeleteFunction", err)
	}
	fns, err = s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	equal(t, "ListFunctions of no functions", fns, []store.Function{})
}

// testFunctionSpec: a function's typed settings come back as they were
// written, absent ones as absent.
func testFunctionSpec(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	code, _ := Code("spec")
	capacity := int64(0)
	tests := []struct {
		name string
		spec fnspec.Spec
	}{
		{"none", fnspec.Spec{}},
		{"all", fnspec.Spec{
			Events: []fnspec.Event{
				{Type: "mqtt", Params: fnspec.EventParams{Host: "broker", Port: 1883, Topic: "a/+/b"}},
				{Type: "mqtt", Params: fnspec.EventParams{Topic: "local/#", Local: true}},
			},
			Sinks:    []fnspec.Sink{{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://couch:5984/db", Username: "u", Password: "p\u00e9"}}},
			Metadata: fnspec.Metadata{Tag: "edge", Capacity: &capacity, Idempotent: true},
			Config: fnspec.Config{
				Env:        map[string]string{"GREETING": "hé llo", "EMPTY": ""},
				Secrets:    []string{"API_KEY"},
				AllowHosts: []string{"*.example.com", "127.0.0.1:8080", "[::1]", "*"},
			},
		}},
		{"metadata only", fnspec.Spec{Metadata: fnspec.Metadata{Tag: "t"}}},
		{"config only", fnspec.Spec{Config: fnspec.Config{AllowHosts: []string{"api.test"}}}},
	}
	for i, tt := range tests {
		in := newFunction(store.DefaultModule, fmt.Sprintf("f%d", i), code)
		in.Spec = tt.spec
		in.ABI = "wasi-command"
		in.Size = 12345 // ignored: the store sets Size from the code
		created, err := s.CreateFunction(ctx, in, code)
		noErr(t, tt.name, err)
		got, err := s.GetFunction(ctx, in.Module, in.Name)
		noErr(t, tt.name, err)
		equal(t, tt.name+": GetFunction", got, created)
		equal(t, tt.name+": Spec", got.Spec, tt.spec)
		if got.Unreadable != nil {
			t.Fatalf("%s: Unreadable = %v", tt.name, got.Unreadable)
		}
		if got.ABI != "wasi-command" || got.Size != int64(len(code)) {
			t.Fatalf("%s: ABI %q, Size %d", tt.name, got.ABI, got.Size)
		}
		fns, err := s.ListFunctions(ctx)
		noErr(t, tt.name+": ListFunctions", err)
		for _, fn := range fns {
			if fn.Name == in.Name {
				equal(t, tt.name+": listed Spec", fn.Spec, tt.spec)
			}
		}
	}
}

// UnreadableSettings checks fnspec's answer to bad stored data on one
// store: corrupt must overwrite the stored JSON of field ("events", "sinks",
// "metadata" or "config") of the function module/name with raw, behind the store's
// back, and return the store to go on with (the same one, or one opened
// anew). Each implementation's tests call it with its own corrupt.
func UnreadableSettings(t *testing.T, s store.Store, corrupt func(t *testing.T, module, name, field string, raw []byte) store.Store) {
	t.Helper()
	ctx := t.Context()
	code, _ := Code("unreadable")
	in := newFunction(store.DefaultModule, "bad", code)
	_, err := s.CreateFunction(ctx, in, code)
	noErr(t, "CreateFunction", err)
	s = corrupt(t, store.DefaultModule, "bad", "metadata", []byte(`{"tag":`))
	s = corrupt(t, store.DefaultModule, "bad", "sinks", []byte(`[{"type":"ftp"}]`))
	s = corrupt(t, store.DefaultModule, "bad", "config", []byte(`{"allow_hosts":["not a host"]}`))

	got, err := s.GetFunction(ctx, store.DefaultModule, "bad")
	noErr(t, "GetFunction of a function with unreadable settings", err)
	if got.Unreadable == nil || !errors.Is(got.Unreadable, fnspec.ErrInvalid) ||
		!strings.Contains(got.Unreadable.Error(), "metadata") || !strings.Contains(got.Unreadable.Error(), "sinks") ||
		!strings.Contains(got.Unreadable.Error(), "config") {
		t.Fatalf("Unreadable = %v, want an fnspec.ErrInvalid naming metadata, sinks and config", got.Unreadable)
	}
	// What still reads is there; the unreadable fields are zero.
	equal(t, "readable events", got.Spec.Events, in.Spec.Events)
	equal(t, "unreadable sinks", got.Spec.Sinks, []fnspec.Sink(nil))
	equal(t, "unreadable metadata", got.Spec.Metadata, fnspec.Metadata{})
	equal(t, "unreadable config", got.Spec.Config, fnspec.Config{})
	fns, err := s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	if len(fns) != 1 || fns[0].Unreadable == nil {
		t.Fatalf("ListFunctions = %+v, want the function, marked unreadable", fns)
	}
	// An update writes the settings it is given: readable again.
	_, err = s.UpdateFunction(ctx, in, code)
	noErr(t, "UpdateFunction", err)
	got, err = s.GetFunction(ctx, store.DefaultModule, "bad")
	noErr(t, "GetFunction after the update", err)
	if got.Unreadable != nil {
		t.Fatalf("after the update: Unreadable = %v", got.Unreadable)
	}
	equal(t, "settings after the update", got.Spec, in.Spec)
	// And a delete removes it like any other.
	_, err = s.DeleteFunction(ctx, store.DefaultModule, "bad")
	noErr(t, "DeleteFunction", err)
}

func testUpdateFunction(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	oldCode, oldDigest := Code("old")
	newCode, newDigest := Code("new, and longer")
	orig := mustCreateFunction(t, s, "m", "f", oldCode)

	upd := newFunction("m", "f", newCode)
	upd.ABI = "wasi-command"
	upd.Spec = fnspec.Spec{Metadata: fnspec.Metadata{Tag: "x"}, Config: fnspec.Config{Env: map[string]string{"V": "2"}, AllowHosts: []string{"a.test:443"}}}
	before := time.Now()
	prev, err := s.UpdateFunction(ctx, upd, newCode)
	after := time.Now()
	noErr(t, "UpdateFunction", err)
	equal(t, "UpdateFunction returns the previous version", prev, orig)

	got, err := s.GetFunction(ctx, "m", "f")
	noErr(t, "GetFunction", err)
	wantTime(t, "Updated", got.Updated, before, after)
	if !got.Created.Equal(orig.Created) {
		t.Fatalf("Created changed by update: %v, was %v", got.Created, orig.Created)
	}
	want := upd
	want.Size = int64(len(newCode))
	want.Created, want.Updated = orig.Created, got.Updated
	equal(t, "updated function", got, want)
	wantCode(t, s, newDigest, newCode)
	wantCode(t, s, oldDigest, oldCode) // version 1 keeps it
	wantCodeCount(t, s, 2)
	removed, err := s.PruneFunctionVersions(ctx, "m", "f", 1)
	noErr(t, "PruneFunctionVersions", err)
	equal(t, "pruned digests", removed, []string{oldDigest})
	wantNoCode(t, s, oldDigest)
	wantCodeCount(t, s, 1)

	// Same code again: the code stays.
	prev, err = s.UpdateFunction(ctx, upd, newCode)
	noErr(t, "UpdateFunction with the same code", err)
	equal(t, "previous version", prev, got)
	wantCode(t, s, newDigest, newCode)
	wantCodeCount(t, s, 1)

	_, err = s.UpdateFunction(ctx, newFunction("m", "missing", newCode), newCode)
	wantErr(t, "UpdateFunction missing function", err, store.ErrNotFound)
	_, err = s.UpdateFunction(ctx, newFunction("missing", "f", newCode), newCode)
	wantErr(t, "UpdateFunction missing module", err, store.ErrNotFound)
	wantCodeCount(t, s, 1)
}

func testCodeOncePerDigest(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	a, da := Code("a")
	b, db := Code("b")
	_, err := s.Code(ctx, da)
	wantErr(t, "Code before any function", err, store.ErrNotFound)
	wantCodeCount(t, s, 0)

	mustCreateFunction(t, s, "m", "a1", a)
	mustCreateFunction(t, s, "m", "a2", a)
	mustCreateFunction(t, s, store.DefaultModule, "a3", a)
	wantCodeCount(t, s, 1)
	wantCode(t, s, da, a)

	// Moving one user of a to b keeps a for the others.
	_, err = s.UpdateFunction(ctx, newFunction("m", "a1", b), b)
	noErr(t, "UpdateFunction a1 to b", err)
	wantCodeCount(t, s, 2)
	wantCode(t, s, da, a)
	wantCode(t, s, db, b)

	_, err = s.DeleteFunction(ctx, "m", "a2")
	noErr(t, "DeleteFunction a2", err)
	wantCode(t, s, da, a)
	_, err = s.DeleteFunction(ctx, store.DefaultModule, "a3")
	noErr(t, "DeleteFunction a3", err)
	wantCode(t, s, da, a) // a1's version 1 still uses it
	_, err = s.PruneFunctionVersions(ctx, "m", "a1", 1)
	noErr(t, "PruneFunctionVersions a1", err)
	wantNoCode(t, s, da) // last user of a gone
	wantCodeCount(t, s, 1)

	_, err = s.DeleteFunction(ctx, "m", "a1")
	noErr(t, "DeleteFunction a1", err)
	wantNoCode(t, s, db)
	wantCodeCount(t, s, 0)

	// Code comes back with a new user.
	mustCreateFunction(t, s, "m", "again", a)
	wantCode(t, s, da, a)
	wantCodeCount(t, s, 1)
}

func testDigestMismatch(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	code, _ := Code("real")
	other, otherDigest := Code("other")
	bad := newFunction(store.DefaultModule, "f", code)
	bad.Digest = otherDigest
	_, err := s.CreateFunction(ctx, bad, code)
	wantErr(t, "CreateFunction with another code's digest", err, store.ErrDigestMismatch)
	_, err = s.GetFunction(ctx, store.DefaultModule, "f")
	wantErr(t, "GetFunction after refused create", err, store.ErrNotFound)
	wantCodeCount(t, s, 0)

	mustCreateFunction(t, s, store.DefaultModule, "f", other)
	bad.Digest = "sha256:00"
	_, err = s.UpdateFunction(ctx, bad, code)
	wantErr(t, "UpdateFunction with a wrong digest", err, store.ErrDigestMismatch)
	got, err := s.GetFunction(ctx, store.DefaultModule, "f")
	noErr(t, "GetFunction", err)
	if got.Digest != otherDigest {
		t.Fatalf("refused update changed the digest to %s", got.Digest)
	}
	wantCodeCount(t, s, 1)
}

func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func testSubjects(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	subs, err := s.ListSubjects(ctx)
	noErr(t, "ListSubjects", err)
	equal(t, "ListSubjects of a new store", subs, []store.Subject{})

	before := time.Now()
	bob, err := s.CreateSubject(ctx, store.Subject{Name: "bob", TokenHash: tokenHash("bob's token")})
	after := time.Now()
	noErr(t, "CreateSubject bob", err)
	wantTime(t, "Subject.Created", bob.Created, before, after)
	admin, err := s.CreateSubject(ctx, store.Subject{Name: "Admin", TokenHash: tokenHash("admin token"), Admin: true})
	noErr(t, "CreateSubject Admin", err)
	if !admin.Admin || bob.Admin {
		t.Fatalf("admin flags: Admin %v, bob %v", admin.Admin, bob.Admin)
	}

	_, err = s.CreateSubject(ctx, store.Subject{Name: "bob", TokenHash: tokenHash("another")})
	wantErr(t, "CreateSubject duplicate name", err, store.ErrExists)
	_, err = s.CreateSubject(ctx, store.Subject{Name: "eve", TokenHash: tokenHash("bob's token")})
	wantErr(t, "CreateSubject duplicate token hash", err, store.ErrExists)

	got, err := s.SubjectByTokenHash(ctx, tokenHash("bob's token"))
	noErr(t, "SubjectByTokenHash", err)
	equal(t, "SubjectByTokenHash", got, bob)
	got, err = s.SubjectByTokenHash(ctx, tokenHash("admin token"))
	noErr(t, "SubjectByTokenHash", err)
	equal(t, "SubjectByTokenHash admin", got, admin)
	_, err = s.SubjectByTokenHash(ctx, tokenHash("unknown"))
	wantErr(t, "SubjectByTokenHash unknown", err, store.ErrNotFound)
	_, err = s.SubjectByTokenHash(ctx, tokenHash("another")) // from the refused create
	wantErr(t, "SubjectByTokenHash of refused subject", err, store.ErrNotFound)

	subs, err = s.ListSubjects(ctx)
	noErr(t, "ListSubjects", err)
	equal(t, "ListSubjects", subs, []store.Subject{admin, bob})

	// A new token replaces the old one at once.
	noErr(t, "RotateSubjectToken", s.RotateSubjectToken(ctx, "Admin", tokenHash("new admin token")))
	_, err = s.SubjectByTokenHash(ctx, tokenHash("admin token"))
	wantErr(t, "SubjectByTokenHash of the replaced token", err, store.ErrNotFound)
	got, err = s.SubjectByTokenHash(ctx, tokenHash("new admin token"))
	noErr(t, "SubjectByTokenHash of the new token", err)
	admin.TokenHash = tokenHash("new admin token")
	equal(t, "SubjectByTokenHash of the new token", got, admin)
	wantErr(t, "RotateSubjectToken unknown", s.RotateSubjectToken(ctx, "nobody", tokenHash("x")), store.ErrNotFound)
	wantErr(t, "RotateSubjectToken to another's hash", s.RotateSubjectToken(ctx, "Admin", tokenHash("bob's token")), store.ErrExists)
	got, err = s.SubjectByTokenHash(ctx, tokenHash("bob's token"))
	noErr(t, "SubjectByTokenHash bob after the refused set", err)
	equal(t, "bob keeps his token", got, bob)
	subs, err = s.ListSubjects(ctx)
	noErr(t, "ListSubjects", err)
	equal(t, "ListSubjects after RotateSubjectToken", subs, []store.Subject{admin, bob})
}

func testScripts(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	scripts, err := s.ListScripts(ctx)
	noErr(t, "ListScripts", err)
	equal(t, "ListScripts of a new store", scripts, []store.Script{})

	src := []byte("- tag_a:\n    - workers: [edge1, edge2]\n      strategy: random\n")
	before := time.Now()
	b, err := s.PutScript(ctx, store.Script{Name: "b", Source: src})
	after := time.Now()
	noErr(t, "PutScript", err)
	wantTime(t, "Script.Created", b.Created, before, after)
	a, err := s.PutScript(ctx, store.Script{Name: "a", Source: nil})
	noErr(t, "PutScript with no source", err)
	equal(t, "nil source is stored empty", a.Source, []byte{})

	_, err = s.PutScript(ctx, store.Script{Name: "b", Source: []byte("other")})
	wantErr(t, "PutScript duplicate", err, store.ErrExists)
	got, err := s.GetScript(ctx, "b")
	noErr(t, "GetScript", err)
	equal(t, "GetScript", got, b)
	_, err = s.GetScript(ctx, "missing")
	wantErr(t, "GetScript missing", err, store.ErrNotFound)

	scripts, err = s.ListScripts(ctx)
	noErr(t, "ListScripts", err)
	equal(t, "ListScripts", scripts, []store.Script{a, b})
}

// sortJoinTokens sorts as ListJoinTokens must: by Created, then ID.
func sortJoinTokens(jts []store.JoinToken) {
	slices.SortFunc(jts, func(a, b store.JoinToken) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
}

func testJoinTokens(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	jts, err := s.ListJoinTokens(ctx)
	noErr(t, "ListJoinTokens", err)
	equal(t, "ListJoinTokens of a new store", jts, []store.JoinToken{})

	// Expires is given in another zone and with nanoseconds: the store keeps
	// it in UTC, truncated to microseconds.
	paris := time.FixedZone("CET", 3600)
	future := time.Now().Add(time.Hour).In(paris)
	future = future.Add(time.Duration(999 - future.Nanosecond()%1000)) // sub-microsecond digits
	before := time.Now()
	never, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0000000b", SecretHash: tokenHash("never")})
	after := time.Now()
	noErr(t, "CreateJoinToken never", err)
	wantTime(t, "JoinToken.Created", never.Created, before, after)
	if !never.Expires.IsZero() {
		t.Fatalf("Expires of a token that never expires = %v, want zero", never.Expires)
	}
	soon, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0000000a", SecretHash: tokenHash("soon"), Expires: future})
	noErr(t, "CreateJoinToken soon", err)
	equal(t, "Expires", soon.Expires, future.UTC().Truncate(time.Microsecond))
	past, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0000000c", SecretHash: tokenHash("past"),
		Expires: time.Now().Add(-time.Minute)})
	noErr(t, "CreateJoinToken already expired", err)

	_, err = s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0000000b", SecretHash: tokenHash("other")})
	wantErr(t, "CreateJoinToken duplicate id", err, store.ErrExists)
	_, err = s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0000000d", SecretHash: tokenHash("soon")})
	wantErr(t, "CreateJoinToken duplicate secret hash", err, store.ErrExists)
	_, err = s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_0000000e", SecretHash: tokenHash("past")})
	wantErr(t, "CreateJoinToken secret hash of an expired token", err, store.ErrExists)

	got, err := s.JoinTokenByHash(ctx, tokenHash("never"))
	noErr(t, "JoinTokenByHash never", err)
	equal(t, "JoinTokenByHash never", got, never)
	got, err = s.JoinTokenByHash(ctx, tokenHash("soon"))
	noErr(t, "JoinTokenByHash soon", err)
	equal(t, "JoinTokenByHash soon", got, soon)
	_, err = s.JoinTokenByHash(ctx, tokenHash("past"))
	wantErr(t, "JoinTokenByHash expired", err, store.ErrNotFound)
	_, err = s.JoinTokenByHash(ctx, tokenHash("unknown"))
	wantErr(t, "JoinTokenByHash unknown", err, store.ErrNotFound)
	_, err = s.JoinTokenByHash(ctx, tokenHash("other")) // from the refused create
	wantErr(t, "JoinTokenByHash of refused token", err, store.ErrNotFound)

	// Expired tokens are listed, so that they can be seen and deleted.
	jts, err = s.ListJoinTokens(ctx)
	noErr(t, "ListJoinTokens", err)
	want := []store.JoinToken{never, soon, past}
	sortJoinTokens(want)
	equal(t, "ListJoinTokens (created, then id)", jts, want)

	noErr(t, "DeleteJoinToken expired", s.DeleteJoinToken(ctx, past.ID))
	noErr(t, "DeleteJoinToken never", s.DeleteJoinToken(ctx, never.ID))
	wantErr(t, "DeleteJoinToken again", s.DeleteJoinToken(ctx, never.ID), store.ErrNotFound)
	wantErr(t, "DeleteJoinToken missing", s.DeleteJoinToken(ctx, "jt_missing"), store.ErrNotFound)
	_, err = s.JoinTokenByHash(ctx, tokenHash("never"))
	wantErr(t, "JoinTokenByHash deleted", err, store.ErrNotFound)
	jts, err = s.ListJoinTokens(ctx)
	noErr(t, "ListJoinTokens", err)
	equal(t, "ListJoinTokens after delete", jts, []store.JoinToken{soon})

	// A deleted token's id and hash are free again.
	again, err := s.CreateJoinToken(ctx, store.JoinToken{ID: never.ID, SecretHash: tokenHash("past")})
	noErr(t, "CreateJoinToken with a deleted token's id and hash", err)
	got, err = s.JoinTokenByHash(ctx, tokenHash("past"))
	noErr(t, "JoinTokenByHash re-created", err)
	equal(t, "JoinTokenByHash re-created", got, again)
}

// testJoinTokenUses: JoinAgent spends a use and creates the agent in one
// transaction. A single-use token lets one agent in; of 12 concurrent
// joins with a token of 3 uses, exactly 3 succeed and exactly 3 agents
// exist; a token without a count (made before they were counted) has no
// limit; an expired or deleted token lets nobody in; a refused join
// leaves no agent behind.
func testJoinTokenUses(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	agent := func(i int) store.Agent {
		return store.Agent{ID: fmt.Sprintf("ag_use%012d", i), Name: "edge", CredentialHash: tokenHash(fmt.Sprintf("cred%d", i)), Labels: []string{}}
	}
	once, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_once", SecretHash: tokenHash("once"), Uses: 1})
	noErr(t, "CreateJoinToken once", err)
	equal(t, "a new token's Used", once.Used, 0)
	a, err := s.JoinAgent(ctx, tokenHash("once"), agent(1))
	noErr(t, "JoinAgent with a single-use token", err)
	got, err := s.AgentByID(ctx, a.ID)
	noErr(t, "AgentByID of the joined agent", err)
	equal(t, "the joined agent", got, a)
	_, err = s.JoinAgent(ctx, tokenHash("once"), agent(2))
	wantErr(t, "JoinAgent with a used-up token", err, store.ErrNotFound)
	_, err = s.AgentByID(ctx, agent(2).ID)
	wantErr(t, "AgentByID of a refused join", err, store.ErrNotFound)
	_, err = s.JoinTokenByHash(ctx, tokenHash("once"))
	wantErr(t, "JoinTokenByHash of a used-up token", err, store.ErrNotFound)

	_, err = s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_three", SecretHash: tokenHash("three"), Uses: 3})
	noErr(t, "CreateJoinToken three", err)
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.JoinAgent(ctx, tokenHash("three"), agent(100+i)) })
	}
	wg.Wait()
	joined := 0
	for i, err := range errs {
		switch {
		case err == nil:
			joined++
			_, err := s.AgentByID(ctx, agent(100+i).ID)
			noErr(t, "AgentByID of a concurrent join", err)
		case errors.Is(err, store.ErrNotFound):
			_, err := s.AgentByID(ctx, agent(100+i).ID)
			wantErr(t, "AgentByID of a refused concurrent join", err, store.ErrNotFound)
		default:
			t.Fatalf("concurrent JoinAgent: %v", err)
		}
	}
	equal(t, "concurrent joins admitted by a token of 3 uses", joined, 3)

	_, err = s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_legacy", SecretHash: tokenHash("legacy")})
	noErr(t, "CreateJoinToken without a count", err)
	for i := range 5 {
		_, err := s.JoinAgent(ctx, tokenHash("legacy"), agent(200+i))
		noErr(t, "JoinAgent with a token without a count", err)
	}
	_, err = s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_gone", SecretHash: tokenHash("gone"), Uses: 5, Expires: time.Now().Add(-time.Second)})
	noErr(t, "CreateJoinToken expired", err)
	_, err = s.JoinAgent(ctx, tokenHash("gone"), agent(300))
	wantErr(t, "JoinAgent with an expired token", err, store.ErrNotFound)
	noErr(t, "DeleteJoinToken three", s.DeleteJoinToken(ctx, "jt_three"))
	_, err = s.JoinAgent(ctx, tokenHash("three"), agent(301))
	wantErr(t, "JoinAgent with a deleted token", err, store.ErrNotFound)

	jts, err := s.ListJoinTokens(ctx)
	noErr(t, "ListJoinTokens", err)
	used := map[string][2]int{}
	for _, jt := range jts {
		used[jt.ID] = [2]int{jt.Uses, jt.Used}
	}
	equal(t, "uses and used per token", used, map[string][2]int{"jt_once": {1, 1}, "jt_legacy": {0, 5}, "jt_gone": {5, 0}})
}

// testJoinTokenExpires watches a token expire: found before Expires by the
// store's clock, ErrNotFound from then on. It polls instead of sleeping and
// judges each answer by the wall clock read around the call (the store reads
// its clock somewhere in between), so a slow machine cannot make it fail.
func testJoinTokenExpires(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	const life = 500 * time.Millisecond
	jt, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_expiring", SecretHash: tokenHash("expiring"),
		Expires: time.Now().Add(life)})
	noErr(t, "CreateJoinToken", err)
	deadline := time.Now().Add(life + 10*time.Second)
	for {
		asked := time.Now()
		_, err := s.JoinTokenByHash(ctx, tokenHash("expiring"))
		answered := time.Now()
		switch {
		case err == nil && !asked.Before(jt.Expires):
			t.Fatalf("JoinTokenByHash asked at %v found the token, which expired at %v", asked, jt.Expires)
		case err == nil:
		case !errors.Is(err, store.ErrNotFound):
			t.Fatalf("JoinTokenByHash: %v", err)
		case answered.Before(jt.Expires):
			t.Fatalf("JoinTokenByHash answered ErrNotFound at %v, before the token expires at %v", answered, jt.Expires)
		default:
			// Expired, and it stays listed until deleted.
			jts, err := s.ListJoinTokens(ctx)
			noErr(t, "ListJoinTokens", err)
			equal(t, "ListJoinTokens after expiry", jts, []store.JoinToken{jt})
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token expiring at %v was still found at %v", jt.Expires, time.Now())
		}
		time.Sleep(20 * time.Millisecond) // the poll interval, not a wait for an outcome
	}
}

func agentID(i int) string { return fmt.Sprintf("ag_%016x", i) }

func testAgents(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	as, err := s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	equal(t, "ListAgents of a new store", as, []store.Agent{})

	labels := []string{"zone=eu-west", "arch=arm64", "gpu=none"} // not sorted: kept as given
	before := time.Now()
	edge, err := s.CreateAgent(ctx, store.Agent{ID: agentID(3), Name: "edge", CredentialHash: tokenHash("cred 3"),
		Labels: labels, LastSeen: time.Unix(1, 0), Created: time.Unix(2, 0)})
	after := time.Now()
	noErr(t, "CreateAgent", err)
	wantTime(t, "Agent.Created", edge.Created, before, after)
	if !edge.LastSeen.Equal(edge.Created) {
		t.Fatalf("LastSeen = %v, want Created %v", edge.LastSeen, edge.Created)
	}
	equal(t, "Labels", edge.Labels, []string{"zone=eu-west", "arch=arm64", "gpu=none"})
	labels[0] = "changed=by caller" // the store keeps its own copy
	got, err := s.AgentByID(ctx, edge.ID)
	noErr(t, "AgentByID", err)
	equal(t, "AgentByID", got, edge)

	// Names need not be unique; byte order, then id.
	noLabels, err := s.CreateAgent(ctx, store.Agent{ID: agentID(1), Name: "edge", CredentialHash: tokenHash("cred 1")})
	noErr(t, "CreateAgent without labels", err)
	equal(t, "nil labels are stored empty", noLabels.Labels, []string{})
	got, err = s.AgentByID(ctx, noLabels.ID)
	noErr(t, "AgentByID", err)
	equal(t, "AgentByID without labels", got, noLabels)
	upper, err := s.CreateAgent(ctx, store.Agent{ID: agentID(2), Name: "Edge", CredentialHash: tokenHash("cred 2"),
		Labels: []string{}})
	noErr(t, "CreateAgent", err)
	b, err := s.CreateAgent(ctx, store.Agent{ID: agentID(0), Name: "b", CredentialHash: tokenHash("cred 0"),
		Labels: []string{"a=1"}})
	noErr(t, "CreateAgent", err)

	_, err = s.CreateAgent(ctx, store.Agent{ID: agentID(3), Name: "x", CredentialHash: tokenHash("fresh")})
	wantErr(t, "CreateAgent duplicate id", err, store.ErrExists)
	_, err = s.CreateAgent(ctx, store.Agent{ID: agentID(9), Name: "x", CredentialHash: tokenHash("cred 1")})
	wantErr(t, "CreateAgent duplicate credential hash", err, store.ErrExists)
	_, err = s.AgentByID(ctx, agentID(9))
	wantErr(t, "AgentByID of refused agent", err, store.ErrNotFound)
	_, err = s.AgentByID(ctx, "ag_missing")
	wantErr(t, "AgentByID missing", err, store.ErrNotFound)

	as, err = s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	equal(t, "ListAgents (name, then id)", as, []store.Agent{upper, b, noLabels, edge})
}

func testTouchAgent(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	a, err := s.CreateAgent(ctx, store.Agent{ID: agentID(1), Name: "old", CredentialHash: tokenHash("cred"),
		Labels: []string{"k=v"}})
	noErr(t, "CreateAgent", err)
	other, err := s.CreateAgent(ctx, store.Agent{ID: agentID(2), Name: "other", CredentialHash: tokenHash("other")})
	noErr(t, "CreateAgent", err)

	seen := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", -5*3600))
	labels := []string{"zone=b", "zone=a"}
	noErr(t, "TouchAgent", s.TouchAgent(ctx, a.ID, "new", labels, seen))
	labels[0] = "changed=by caller"
	got, err := s.AgentByID(ctx, a.ID)
	noErr(t, "AgentByID", err)
	want := a
	want.Name, want.Labels = "new", []string{"zone=b", "zone=a"}
	want.LastSeen = time.Date(2031, 5, 6, 12, 8, 9, 123456000, time.UTC)
	equal(t, "touched agent", got, want)
	if got.LastSeen.Location() != time.UTC {
		t.Fatalf("LastSeen = %v, want UTC", got.LastSeen)
	}

	// nil labels clear them; the other agent is untouched.
	noErr(t, "TouchAgent nil labels", s.TouchAgent(ctx, a.ID, "new", nil, seen))
	got, err = s.AgentByID(ctx, a.ID)
	noErr(t, "AgentByID", err)
	equal(t, "labels after touching with nil", got.Labels, []string{})
	got, err = s.AgentByID(ctx, other.ID)
	noErr(t, "AgentByID other", err)
	equal(t, "untouched agent", got, other)

	wantErr(t, "TouchAgent missing", s.TouchAgent(ctx, "ag_missing", "x", nil, seen), store.ErrNotFound)
	_, err = s.AgentByID(ctx, "ag_missing")
	wantErr(t, "AgentByID after touching a missing agent", err, store.ErrNotFound)

	// The new name sorts the list.
	noErr(t, "TouchAgent rename", s.TouchAgent(ctx, other.ID, "a", nil, seen))
	as, err := s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	if len(as) != 2 || as[0].ID != other.ID || as[1].ID != a.ID {
		t.Fatalf("ListAgents after rename = %+v, want %s then %s", as, other.ID, a.ID)
	}
}

// testAgentControl: what operators set on an agent is kept as given,
// survives a reopen and TouchAgent, and touches no other agent; the join
// memory is kept from the join.
func testAgentControl(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	_, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_01", SecretHash: tokenHash("join"), Uses: 2})
	noErr(t, "CreateJoinToken", err)
	a, err := s.JoinAgent(ctx, tokenHash("join"), store.Agent{ID: agentID(1), Name: "edge", CredentialHash: tokenHash("cred 1"),
		Labels: []string{"zone=a"}, JoinMemBytes: 4 << 30})
	noErr(t, "JoinAgent", err)
	equal(t, "a new agent's control", a.Control, store.AgentControl{Labels: []string{}})
	equal(t, "JoinMemBytes", a.JoinMemBytes, uint64(4<<30))
	other, err := s.CreateAgent(ctx, store.Agent{ID: agentID(2), Name: "other", CredentialHash: tokenHash("cred 2")})
	noErr(t, "CreateAgent", err)

	labels := []string{"zone=b", "tag=gpu"}
	got, err := s.SetAgentControl(ctx, a.ID, store.AgentControl{Cordoned: true, Labels: labels, MemCapBytes: 256 << 20})
	noErr(t, "SetAgentControl", err)
	labels[0] = "changed=by caller"
	want := a
	want.Control = store.AgentControl{Cordoned: true, Labels: []string{"zone=b", "tag=gpu"}, MemCapBytes: 256 << 20}
	equal(t, "SetAgentControl's answer", got, want)
	noErr(t, "TouchAgent", s.TouchAgent(ctx, a.ID, "edge", []string{"zone=c"}, a.LastSeen))
	want.Labels = []string{"zone=c"}
	noErr(t, "Close", s.Close())
	s = reopen(t)
	got, err = s.AgentByID(ctx, a.ID)
	noErr(t, "AgentByID after a reopen", err)
	equal(t, "control after TouchAgent and a reopen", got, want)
	got, err = s.AgentByID(ctx, other.ID)
	noErr(t, "AgentByID other", err)
	equal(t, "the other agent", got, other)

	// Huge byte counts are bounded, not refused (Postgres keeps bigint).
	got, err = s.SetAgentControl(ctx, a.ID, store.AgentControl{MemCapBytes: ^uint64(0)})
	noErr(t, "SetAgentControl huge cap", err)
	equal(t, "huge cap", got.Control.MemCapBytes, uint64(1<<62))
	got, err = s.AgentByID(ctx, a.ID)
	noErr(t, "AgentByID", err)
	equal(t, "uncordoned, labels cleared", got.Control, store.AgentControl{Labels: []string{}, MemCapBytes: 1 << 62})

	_, err = s.SetAgentControl(ctx, "ag_missing", store.AgentControl{Cordoned: true})
	wantErr(t, "SetAgentControl missing", err, store.ErrNotFound)
}

// testDeleteAgent: a deleted agent is gone (its credential with it), others
// stay, and its credential hash can be used again.
func testDeleteAgent(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	a, err := s.CreateAgent(ctx, store.Agent{ID: agentID(1), Name: "a", CredentialHash: tokenHash("cred 1")})
	noErr(t, "CreateAgent", err)
	b, err := s.CreateAgent(ctx, store.Agent{ID: agentID(2), Name: "b", CredentialHash: tokenHash("cred 2")})
	noErr(t, "CreateAgent", err)
	noErr(t, "DeleteAgent", s.DeleteAgent(ctx, a.ID))
	wantErr(t, "DeleteAgent twice", s.DeleteAgent(ctx, a.ID), store.ErrNotFound)
	noErr(t, "Close", s.Close())
	s = reopen(t)
	_, err = s.AgentByID(ctx, a.ID)
	wantErr(t, "AgentByID of a deleted agent", err, store.ErrNotFound)
	wantErr(t, "TouchAgent of a deleted agent", s.TouchAgent(ctx, a.ID, "a", nil, time.Now()), store.ErrNotFound)
	as, err := s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	equal(t, "ListAgents after a delete", as, []store.Agent{b})
	_, err = s.CreateAgent(ctx, store.Agent{ID: agentID(3), Name: "c", CredentialHash: tokenHash("cred 1")})
	noErr(t, "CreateAgent with a deleted agent's credential hash", err)
}

// snapshot is everything a store shows through its interface.
type snapshot struct {
	Modules    []store.Module
	Functions  []store.Function
	Code       map[string][]byte
	CodeCount  int
	Subjects   []store.Subject
	Scripts    []store.Script
	JoinTokens []store.JoinToken
	Agents     []store.Agent
	Quarantine []store.Quarantine
}

func take(t *testing.T, s store.Store) snapshot {
	t.Helper()
	ctx := t.Context()
	var snap snapshot
	mods, err := s.ListModules(ctx)
	noErr(t, "ListModules", err)
	for _, n := range store.ModuleNames(mods) {
		m, err := s.GetModule(ctx, n)
		noErr(t, "GetModule", err)
		snap.Modules = append(snap.Modules, m)
	}
	snap.Functions, err = s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	snap.Code = map[string][]byte{}
	for _, fn := range snap.Functions {
		if snap.Code[fn.Digest], err = s.Code(ctx, fn.Digest); err != nil {
			t.Fatalf("Code of %s/%s: %v", fn.Module, fn.Name, err)
		}
	}
	snap.CodeCount = codeCount(t, s)
	snap.Subjects, err = s.ListSubjects(ctx)
	noErr(t, "ListSubjects", err)
	snap.Scripts, err = s.ListScripts(ctx)
	noErr(t, "ListScripts", err)
	snap.JoinTokens, err = s.ListJoinTokens(ctx)
	noErr(t, "ListJoinTokens", err)
	snap.Agents, err = s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	snap.Quarantine, err = s.ListQuarantine(ctx)
	noErr(t, "ListQuarantine", err)
	return snap
}

// populate gives s some of everything.
func populate(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	mustCreateModule(t, s, "n")
	a, _ := Code("pop a")
	b, _ := Code("pop b")
	mustCreateFunction(t, s, "m", "f", a)
	mustCreateFunction(t, s, "m", "g", b)
	mustCreateFunction(t, s, "n", "f", a)
	mustCreateFunction(t, s, store.DefaultModule, "h", b)
	_, err := s.CreateSubject(ctx, store.Subject{Name: "alice", TokenHash: tokenHash("alice"), Admin: true})
	noErr(t, "CreateSubject", err)
	_, err = s.CreateSubject(ctx, store.Subject{Name: "bob", TokenHash: tokenHash("bob")})
	noErr(t, "CreateSubject", err)
	_, err = s.PutScript(ctx, store.Script{Name: "s", Source: []byte("- t:\n  - workers: \"*\"\n")})
	noErr(t, "PutScript", err)
	for _, jt := range []store.JoinToken{
		{ID: "jt_never", SecretHash: tokenHash("jt never")},
		{ID: "jt_later", SecretHash: tokenHash("jt later"), Expires: time.Now().Add(24 * time.Hour)},
		{ID: "jt_past", SecretHash: tokenHash("jt past"), Expires: time.Now().Add(-time.Hour)},
	} {
		_, err = s.CreateJoinToken(ctx, jt)
		noErr(t, "CreateJoinToken "+jt.ID, err)
	}
	_, err = s.CreateAgent(ctx, store.Agent{ID: agentID(1), Name: "edge", CredentialHash: tokenHash("ag 1"),
		Labels: []string{"zone=eu", "arch=arm64"}})
	noErr(t, "CreateAgent", err)
	_, err = s.CreateAgent(ctx, store.Agent{ID: agentID(2), Name: "edge", CredentialHash: tokenHash("ag 2")})
	noErr(t, "CreateAgent", err)
	noErr(t, "TouchAgent", s.TouchAgent(ctx, agentID(2), "edge", []string{"zone=us"}, time.Now().Add(time.Second)))
	_, digest := Code("pop poison")
	_, err = s.QuarantineDigest(ctx, store.Quarantine{Digest: digest, Reason: "the agent died while running this code", Agent: agentID(1), Since: time.Now()})
	noErr(t, "QuarantineDigest", err)
}

func testFailedWritesChangeNothing(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	populate(t, s)
	want := take(t, s)
	code, _ := Code("fresh code")
	mismatched := newFunction("m", "new", code)
	mismatched.Digest = "sha256:ff"
	canceled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name   string
		write  func(ctx context.Context) error
		target error // nil: any error
	}{
		{"CreateModule taken", func(ctx context.Context) error { return s.CreateModule(ctx, "m", "") }, store.ErrExists},
		{"RenameModule onto taken", func(ctx context.Context) error { return s.RenameModule(ctx, "m", "n") }, store.ErrExists},
		{"RenameModule missing", func(ctx context.Context) error { return s.RenameModule(ctx, "x", "y") }, store.ErrNotFound},
		{"RenameModule default", func(ctx context.Context) error { return s.RenameModule(ctx, "_", "y") }, store.ErrDefaultModule},
		{"DeleteModule missing", func(ctx context.Context) error { return s.DeleteModule(ctx, "x") }, store.ErrNotFound},
		{"DeleteModule default", func(ctx context.Context) error { return s.DeleteModule(ctx, "_") }, store.ErrDefaultModule},
		{"CreateFunction taken, new code", func(ctx context.Context) error {
			_, err := s.CreateFunction(ctx, newFunction("m", "f", code), code)
			return err
		}, store.ErrExists},
		{"CreateFunction missing module, new code", func(ctx context.Context) error {
			_, err := s.CreateFunction(ctx, newFunction("x", "f", code), code)
			return err
		}, store.ErrNotFound},
		{"CreateFunction digest mismatch", func(ctx context.Context) error {
			_, err := s.CreateFunction(ctx, mismatched, code)
			return err
		}, store.ErrDigestMismatch},
		{"UpdateFunction missing, new code", func(ctx context.Context) error {
			_, err := s.UpdateFunction(ctx, newFunction("m", "x", code), code)
			return err
		}, store.ErrNotFound},
		{"DeleteFunction missing", func(ctx context.Context) error {
			_, err := s.DeleteFunction(ctx, "m", "x")
			return err
		}, store.ErrNotFound},
		{"CreateSubject name taken", func(ctx context.Context) error {
			_, err := s.CreateSubject(ctx, store.Subject{Name: "alice", TokenHash: tokenHash("new")})
			return err
		}, store.ErrExists},
		{"CreateSubject token taken", func(ctx context.Context) error {
			_, err := s.CreateSubject(ctx, store.Subject{Name: "carol", TokenHash: tokenHash("bob")})
			return err
		}, store.ErrExists},
		{"PutScript taken", func(ctx context.Context) error {
			_, err := s.PutScript(ctx, store.Script{Name: "s", Source: []byte("x")})
			return err
		}, store.ErrExists},
		{"CreateJoinToken id taken", func(ctx context.Context) error {
			_, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_never", SecretHash: tokenHash("new")})
			return err
		}, store.ErrExists},
		{"CreateJoinToken hash taken", func(ctx context.Context) error {
			_, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_new", SecretHash: tokenHash("jt past")})
			return err
		}, store.ErrExists},
		{"DeleteJoinToken missing", func(ctx context.Context) error { return s.DeleteJoinToken(ctx, "jt_x") }, store.ErrNotFound},
		{"CreateAgent id taken", func(ctx context.Context) error {
			_, err := s.CreateAgent(ctx, store.Agent{ID: agentID(1), Name: "x", CredentialHash: tokenHash("new")})
			return err
		}, store.ErrExists},
		{"CreateAgent credential taken", func(ctx context.Context) error {
			_, err := s.CreateAgent(ctx, store.Agent{ID: agentID(9), Name: "x", CredentialHash: tokenHash("ag 2")})
			return err
		}, store.ErrExists},
		{"TouchAgent missing", func(ctx context.Context) error {
			return s.TouchAgent(ctx, agentID(9), "x", []string{"a=b"}, time.Now())
		}, store.ErrNotFound},
		{"CreateJoinToken canceled context", func(context.Context) error {
			_, err := s.CreateJoinToken(canceled, store.JoinToken{ID: "jt_new", SecretHash: tokenHash("new")})
			return err
		}, nil},
		{"DeleteJoinToken canceled context", func(context.Context) error { return s.DeleteJoinToken(canceled, "jt_never") }, nil},
		{"CreateAgent canceled context", func(context.Context) error {
			_, err := s.CreateAgent(canceled, store.Agent{ID: agentID(9), Name: "x", CredentialHash: tokenHash("new")})
			return err
		}, nil},
		{"TouchAgent canceled context", func(context.Context) error {
			return s.TouchAgent(canceled, agentID(1), "x", nil, time.Now())
		}, nil},
		{"ReleaseDigest missing", func(ctx context.Context) error {
			_, err := s.ReleaseDigest(ctx, "sha256:00")
			return err
		}, store.ErrNotFound},
		{"QuarantineDigest empty digest", func(ctx context.Context) error {
			_, err := s.QuarantineDigest(ctx, store.Quarantine{Reason: "r"})
			return err
		}, store.ErrInvalid},
		{"QuarantineDigest canceled context", func(context.Context) error {
			_, err := s.QuarantineDigest(canceled, store.Quarantine{Digest: "sha256:01"})
			return err
		}, nil},
		{"ReleaseDigest canceled context", func(context.Context) error {
			_, err := s.ReleaseDigest(canceled, want.Quarantine[0].Digest)
			return err
		}, nil},
		{"CreateModule canceled context", func(context.Context) error { return s.CreateModule(canceled, "new", "") }, nil},
		{"CreateFunction canceled context", func(context.Context) error {
			_, err := s.CreateFunction(canceled, newFunction("m", "new", code), code)
			return err
		}, nil},
		{"DeleteModule canceled context", func(context.Context) error { return s.DeleteModule(canceled, "m") }, nil},
		{"UpdateFunction canceled context", func(context.Context) error {
			_, err := s.UpdateFunction(canceled, newFunction("m", "f", code), code)
			return err
		}, nil},
	}
	for _, tt := range tests {
		err := tt.write(t.Context())
		if err == nil {
			t.Fatalf("%s: succeeded, want an error", tt.name)
		}
		if tt.target != nil {
			wantErr(t, tt.name, err, tt.target)
		}
		equal(t, "state after "+tt.name, take(t, s), want)
	}
}

const goroutines = 32

// parallel runs fn(i) for i in [0, n) at once and waits for all.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func testConcurrentDuplicateCreate(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	errs := make([]error, goroutines)
	parallel(goroutines, func(i int) {
		code, _ := Code(fmt.Sprintf("racer %d", i)) // each racer brings its own code
		_, errs[i] = s.CreateFunction(ctx, newFunction("m", "f", code), code)
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("racers %d and %d both created m/f", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("racer %d: %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer created m/f")
	}
	code, digest := Code(fmt.Sprintf("racer %d", winner))
	got, err := s.GetFunction(ctx, "m", "f")
	noErr(t, "GetFunction", err)
	if got.Digest != digest {
		t.Fatalf("m/f has digest %s, want the winner's %s", got.Digest, digest)
	}
	wantCode(t, s, digest, code)
	wantCodeCount(t, s, 1) // the losers' code was not kept
}

func testConcurrentCreate(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	code, digest := Code("shared by all")
	errs := make([]error, goroutines)
	parallel(goroutines, func(i int) {
		_, errs[i] = s.CreateFunction(ctx, newFunction(store.DefaultModule, fmt.Sprintf("f%02d", i), code), code)
	})
	var want []string
	for i, err := range errs {
		noErr(t, fmt.Sprintf("CreateFunction f%02d", i), err)
		want = append(want, fmt.Sprintf("f%02d", i))
	}
	equal(t, "functions", moduleFunctions(t, s, store.DefaultModule), want)
	wantCode(t, s, digest, code)
	wantCodeCount(t, s, 1)
}

// testConcurrentCodeChurn creates, updates and deletes functions sharing two
// digests from many goroutines: no call may fail (a collector must never
// delete code a concurrent writer just started using), and at the end only
// the code still in use remains.
func testConcurrentCodeChurn(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	x, dx := Code("x")
	y, dy := Code("y")
	const rounds = 8
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
		name := fmt.Sprintf("churn%02d", i)
		first, second := x, y
		if i%2 == 1 {
			first, second = y, x
		}
		for range rounds {
			if _, err := s.CreateFunction(ctx, newFunction(store.DefaultModule, name, first), first); err != nil {
				fail(fmt.Errorf("create %s: %w", name, err))
				return
			}
			if _, err := s.UpdateFunction(ctx, newFunction(store.DefaultModule, name, second), second); err != nil {
				fail(fmt.Errorf("update %s: %w", name, err))
				return
			}
			if _, err := s.DeleteFunction(ctx, store.DefaultModule, name); err != nil {
				fail(fmt.Errorf("delete %s: %w", name, err))
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	wantNoCode(t, s, dx)
	wantNoCode(t, s, dy)
	wantCodeCount(t, s, 0)

	// Again, with a function that keeps using x throughout.
	mustCreateFunction(t, s, store.DefaultModule, "keeper", x)
	parallel(goroutines/2, func(i int) {
		name := fmt.Sprintf("churn%02d", i)
		for range rounds {
			if _, err := s.CreateFunction(ctx, newFunction(store.DefaultModule, name, x), x); err != nil {
				fail(fmt.Errorf("create %s: %w", name, err))
				return
			}
			if _, err := s.DeleteFunction(ctx, store.DefaultModule, name); err != nil {
				fail(fmt.Errorf("delete %s: %w", name, err))
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s, dx, x)
	wantCodeCount(t, s, 1)
}

// testConcurrentDeleteModule deletes a module while functions are being
// created in it: each create either happened before (and is deleted with the
// module) or fails with ErrNotFound, and no code is left behind.
func testConcurrentDeleteModule(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "doomed")
	errs := make([]error, goroutines)
	var deleteErr error
	parallel(goroutines+1, func(i int) {
		if i == goroutines {
			deleteErr = s.DeleteModule(ctx, "doomed")
			return
		}
		code, _ := Code(fmt.Sprintf("doomed %d", i))
		_, errs[i] = s.CreateFunction(ctx, newFunction("doomed", fmt.Sprintf("f%02d", i), code), code)
	})
	noErr(t, "DeleteModule", deleteErr)
	for i, err := range errs {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("create %d: %v, want success or ErrNotFound", i, err)
		}
	}
	_, err := s.GetModule(ctx, "doomed")
	wantErr(t, "GetModule doomed", err, store.ErrNotFound)
	fns, err := s.ListFunctions(ctx)
	noErr(t, "ListFunctions", err)
	equal(t, "functions left", fns, []store.Function{})
	for i := range goroutines {
		_, digest := Code(fmt.Sprintf("doomed %d", i))
		wantNoCode(t, s, digest)
	}
	wantCodeCount(t, s, 0)
}

// agentGoroutines is how many agents join at once in the concurrency tests.
const agentGoroutines = 16

func testConcurrentCreateAgent(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	created := make([]store.Agent, agentGoroutines)
	errs := make([]error, agentGoroutines)
	parallel(agentGoroutines, func(i int) {
		created[i], errs[i] = s.CreateAgent(ctx, store.Agent{ID: agentID(i), Name: "edge",
			CredentialHash: tokenHash(fmt.Sprintf("cred %d", i)), Labels: []string{fmt.Sprintf("n=%d", i)}})
	})
	for i, err := range errs {
		noErr(t, "CreateAgent "+agentID(i), err)
	}
	as, err := s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	equal(t, "ListAgents (same name: by id)", as, created)
}

// testConcurrentDuplicateAgent races pairs of joins that clash on the
// credential hash, or on the id: exactly one of each pair wins.
func testConcurrentDuplicateAgent(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	const rounds = 8
	for round := range rounds {
		for c, clash := range []string{"credential", "id"} {
			base := 100*round + 10*c // ids and credentials of this race: base, base+1
			racers := make([]store.Agent, 2)
			for i := range racers {
				racers[i] = store.Agent{ID: agentID(base + i), Name: fmt.Sprintf("racer %d", i),
					CredentialHash: tokenHash(fmt.Sprintf("cred %d", base+i))}
				if clash == "credential" {
					racers[i].CredentialHash = tokenHash(fmt.Sprintf("cred %d", base))
				} else {
					racers[i].ID = agentID(base)
				}
			}
			errs := make([]error, len(racers))
			parallel(len(racers), func(i int) { _, errs[i] = s.CreateAgent(ctx, racers[i]) })
			what := fmt.Sprintf("round %d, same %s", round, clash)
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("%s: both racers joined", what)
				case err == nil:
					winner = i
				case !errors.Is(err, store.ErrExists):
					t.Fatalf("%s: racer %d: %v, want ErrExists", what, i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("%s: no racer joined", what)
			}
			got, err := s.AgentByID(ctx, racers[winner].ID)
			noErr(t, what+": AgentByID", err)
			if got.Name != racers[winner].Name || !slices.Equal(got.CredentialHash, racers[winner].CredentialHash) {
				t.Fatalf("%s: stored %+v, want the winner %+v", what, got, racers[winner])
			}
			if loser := racers[1-winner]; clash == "credential" {
				_, err := s.AgentByID(ctx, loser.ID)
				wantErr(t, what+": AgentByID of the loser", err, store.ErrNotFound)
			}
		}
	}
	as, err := s.ListAgents(ctx)
	noErr(t, "ListAgents", err)
	if len(as) != 2*rounds {
		t.Fatalf("ListAgents: %d agents, want %d", len(as), 2*rounds)
	}
}

func testReopen(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	populate(t, s)
	// Leave a renamed module, a deleted function and updated code behind too.
	ctx := t.Context()
	noErr(t, "RenameModule", s.RenameModule(ctx, "n", "renamed"))
	_, err := s.DeleteFunction(ctx, "m", "g")
	noErr(t, "DeleteFunction", err)
	c, _ := Code("updated before close")
	_, err = s.UpdateFunction(ctx, newFunction("m", "f", c), c)
	noErr(t, "UpdateFunction", err)
	want := take(t, s)
	noErr(t, "Close", s.Close())

	s = reopen(t)
	equal(t, "state after reopen", take(t, s), want)
	if !slices.ContainsFunc(want.Modules, func(m store.Module) bool { return m.Name == "renamed" }) {
		t.Fatalf("snapshot lacks the renamed module: %+v", want.Modules)
	}
	// Still writable, and still enforcing its rules.
	mustCreateModule(t, s, "after")
	wantErr(t, "CreateModule m after reopen", s.CreateModule(ctx, "m", ""), store.ErrExists)
	wantErr(t, "DeleteModule _ after reopen", s.DeleteModule(ctx, store.DefaultModule), store.ErrDefaultModule)
	_, err = s.JoinTokenByHash(ctx, tokenHash("jt past"))
	wantErr(t, "JoinTokenByHash of an expired token after reopen", err, store.ErrNotFound)
	jt, err := s.JoinTokenByHash(ctx, tokenHash("jt later"))
	noErr(t, "JoinTokenByHash after reopen", err)
	if jt.ID != "jt_later" {
		t.Fatalf("JoinTokenByHash after reopen = %+v", jt)
	}
	_, err = s.CreateAgent(ctx, store.Agent{ID: agentID(3), Name: "x", CredentialHash: tokenHash("ag 1")})
	wantErr(t, "CreateAgent with a taken credential after reopen", err, store.ErrExists)
	noErr(t, "TouchAgent after reopen", s.TouchAgent(ctx, agentID(1), "renamed", nil, time.Now()))
}

// testHasCode: a store.CodeChecker says whether a digest's code is stored:
// while a function uses it, not after its last user is deleted.
func testHasCode(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	cc, ok := s.(store.CodeChecker)
	if !ok {
		t.Skip("the store is no store.CodeChecker")
	}
	ctx := t.Context()
	code, digest := Code("has")
	has := func() bool {
		ok, err := cc.HasCode(ctx, digest)
		noErr(t, "HasCode", err)
		return ok
	}
	if has() {
		t.Fatal("HasCode of code never stored")
	}
	mustCreateFunction(t, s, "_", "f", code)
	if !has() {
		t.Fatal("HasCode of a function's code is false")
	}
	_, err := s.DeleteFunction(ctx, "_", "f")
	noErr(t, "DeleteFunction", err)
	if has() {
		t.Fatal("HasCode after its last function was deleted")
	}
}
