package api

import (
	"context"
	"reflect"
	"testing"
)

func withFunctionVersions(n int) envOption { return func(c *Config) { c.FunctionVersions = n } }

// versionsOf is GET .../versions as who.
func versionsOf(t *testing.T, e *env, who, path string) []versionInfo {
	t.Helper()
	status, body := e.do(req{method: "GET", path: path + "/versions", token: who})
	return wantData[[]versionInfo](t, status, body, 200)
}

func versionNumbers(vs []versionInfo) (nums []int64, digests []string) {
	for _, v := range vs {
		nums = append(nums, v.Version)
		digests = append(digests, v.Digest)
	}
	return nums, digests
}

// TestVersionsAndRollback: updates make versions, listed newest first; a
// rollback (to the previous version, or to N) is a new version with the
// old code and settings; bad rollbacks are refused and change nothing;
// the bound drops the oldest and their code.
func TestVersionsAndRollback(t *testing.T) {
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, ts.open(t), withFunctionVersions(4))
			a, b := fixture(t, "hello_wat.wasm"), fixture(t, "echo_c.wasm")
			const path = "/v1/fn/_/f"
			status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "f"}, codePart(a),
				part{name: "metadata", value: `{"tag":"one"}`})
			wantData[nameItem](t, status, body, 201)
			vs := versionsOf(t, e, "", path)
			if len(vs) != 1 || vs[0].Version != 1 || !vs[0].Current || vs[0].Settings.Metadata.Tag != "one" {
				t.Fatalf("versions of a new function: %+v", vs)
			}
			da := vs[0].Digest

			// The only version: nothing to roll back to.
			status, body = e.do(req{method: "POST", path: path + "/rollback"})
			wantError(t, status, body, 404, "no earlier version")

			status, body = e.upload("PUT", path, codePart(b), part{name: "events", value: `[{"type":"mqtt","params":{"topic":"t","local":true}}]`})
			wantData[nameItem](t, status, body, 200)
			vs = versionsOf(t, e, "", path)
			nums, ds := versionNumbers(vs)
			db := ds[0]
			if !reflect.DeepEqual(nums, []int64{2, 1}) || ds[1] != da || db == da || !vs[0].Current || vs[1].Current {
				t.Fatalf("versions after an update: %+v", vs)
			}
			if vs[0].Settings.Events != 1 || vs[0].Settings.Metadata.Tag != "" || vs[1].Settings.Events != 0 {
				t.Fatalf("settings summaries: %+v", vs)
			}

			// Refused rollbacks change nothing.
			before := e.snapshot()
			for _, bad := range []struct {
				body   string
				status int
				detail string
			}{
				{`{"to":0}`, 400, "want a version number"},
				{`{"to":-1}`, 400, "want a version number"},
				{`{"to":1.5}`, 400, "want a version number"},
				{`{"to":"1"}`, 400, "want a version number"},
				{`{"to":null}`, 400, "want a version number"},
				{`{"to":99999999999999999999}`, 400, "want a version number"},
				{`{"version":1}`, 400, `unknown key "version"`},
				{`[1]`, 400, "Invalid JSON body"},
				{`{"to":1}x`, 400, "unexpected data"},
				{`{"to":2}`, 400, "Version 2 is the current version"},
				{`{"to":3}`, 404, "Version 3 of _/f is not kept (kept: 1-2)"},
			} {
				status, body := e.do(req{method: "POST", path: path + "/rollback", body: []byte(bad.body), contentType: "application/json", bad: bad.status == 400})
				wantError(t, status, body, bad.status, bad.detail)
			}
			status, body = e.do(req{method: "POST", path: "/v1/fn/_/missing/rollback"})
			wantError(t, status, body, 404, "Function _/missing not found")
			status, body = e.do(req{method: "GET", path: "/v1/fn/_/missing/versions"})
			wantError(t, status, body, 404, "Function _/missing not found")
			status, body = e.do(req{method: "GET", path: "/v1/fn/nope/f/versions"})
			wantError(t, status, body, 404)
			e.wantUnchanged(before)
			if n, _ := versionNumbers(versionsOf(t, e, "", path)); !reflect.DeepEqual(n, []int64{2, 1}) {
				t.Fatalf("versions after refused rollbacks: %v", n)
			}

			// The default: the previous version, as a new one.
			status, body = e.do(req{method: "POST", path: path + "/rollback"})
			rb := wantData[rollbackResult](t, status, body, 200)
			if rb != (rollbackResult{Name: "f", Version: 3, From: 1, Digest: da}) {
				t.Fatalf("rollback: %+v", rb)
			}
			fn, err := e.st.GetFunction(context.Background(), "_", "f")
			if err != nil || fn.Digest != da || fn.Spec.Metadata.Tag != "one" || len(fn.Spec.Events) != 0 {
				t.Fatalf("function after rollback: %+v %v", fn, err)
			}
			// Undo it: {"to": 2}.
			status, body = e.json("POST", path+"/rollback", map[string]any{"to": 2})
			rb = wantData[rollbackResult](t, status, body, 200)
			if rb != (rollbackResult{Name: "f", Version: 4, From: 2, Digest: db}) {
				t.Fatalf("rollback to 2: %+v", rb)
			}
			fn, _ = e.st.GetFunction(context.Background(), "_", "f")
			if fn.Digest != db || len(fn.Spec.Events) != 1 || fn.Spec.Metadata.Tag != "" {
				t.Fatalf("function after rollback to 2: %+v", fn)
			}
			// An empty JSON object is the default too; the bound (4) drops
			// version 1.
			status, body = e.json("POST", path+"/rollback", map[string]any{})
			rb = wantData[rollbackResult](t, status, body, 200)
			if rb.Version != 5 || rb.From != 3 || rb.Digest != da {
				t.Fatalf("rollback with {}: %+v", rb)
			}
			nums, _ = versionNumbers(versionsOf(t, e, "", path))
			if !reflect.DeepEqual(nums, []int64{5, 4, 3, 2}) {
				t.Fatalf("versions under a bound of 4: %v", nums)
			}
			status, body = e.json("POST", path+"/rollback", map[string]any{"to": 1})
			wantError(t, status, body, 404, "Version 1 of _/f is not kept (kept: 2-5)")

			// Deleting the function deletes its versions and their code.
			status, _ = e.do(req{method: "DELETE", path: path})
			if status != 204 {
				t.Fatalf("delete: %d", status)
			}
			for _, d := range []string{da, db} {
				if _, err := e.st.Code(context.Background(), d); err == nil {
					t.Fatalf("code %s kept after the function's delete", d)
				}
			}
		})
	}
}

// TestRollbackBoundOne: with --function-versions 1 no earlier version is
// kept, so there is nothing to roll back to, and old code goes at once.
func TestRollbackBoundOne(t *testing.T) {
	e := start(t, openEmbedded(t), withFunctionVersions(1))
	a, b := fixture(t, "hello_wat.wasm"), fixture(t, "echo_c.wasm")
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "f"}, codePart(a))
	wantData[nameItem](t, status, body, 201)
	status, body = e.upload("PUT", "/v1/fn/_/f", codePart(b))
	wantData[nameItem](t, status, body, 200)
	vs := versionsOf(t, e, "", "/v1/fn/_/f")
	if len(vs) != 1 || vs[0].Version != 2 {
		t.Fatalf("versions with a bound of 1: %+v", vs)
	}
	status, body = e.do(req{method: "POST", path: "/v1/fn/_/f/rollback"})
	wantError(t, status, body, 404, "no earlier version")
	if n := e.st.(interface {
		CodeCount(context.Context) (int, error)
	}); n != nil {
		if c, err := n.CodeCount(context.Background()); err != nil || c != 1 {
			t.Fatalf("code blobs: %d %v, want 1", c, err)
		}
	}
}

func TestFunctionVersionsConfig(t *testing.T) {
	for _, n := range []int{-1, MaxFunctionVersions + 1} {
		if _, err := New(Config{Store: openEmbedded(t), FunctionVersions: n}); err == nil {
			t.Errorf("FunctionVersions %d accepted", n)
		}
	}
	s, err := New(Config{Store: openEmbedded(t)})
	if err != nil || s.versions != DefaultFunctionVersions {
		t.Fatalf("default versions: %v %v", s, err)
	}
}

// reachVersions sends one good request to each versions route, for
// TestFunLessFlow's check that every operation of openapi.yaml is reached.
func reachVersions(t *testing.T, e *env) {
	t.Helper()
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "versioned"}, codePart(fixture(t, "hello_wat.wasm")))
	wantData[nameItem](t, status, body, 201)
	status, body = e.upload("PUT", "/v1/fn/_/versioned", codePart(fixture(t, "hello_c.wasm")))
	wantData[nameItem](t, status, body, 200)
	if vs := versionsOf(t, e, "", "/v1/fn/_/versioned"); len(vs) != 2 {
		t.Fatalf("versions: %+v", vs)
	}
	status, body = e.json("POST", "/v1/fn/_/versioned/rollback", map[string]any{"to": 1})
	wantData[rollbackResult](t, status, body, 200)
	if status, _ := e.do(req{method: "DELETE", path: "/v1/fn/_/versioned"}); status != 204 {
		t.Fatalf("delete: %d", status)
	}
}
