package fleet

import (
	"context"
	"log/slog"
	"slices"
	"testing"

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

// versionStore is a Store whose only working method is FunctionVersions.
type versionStore struct {
	Store
	vs []store.FunctionVersion
}

func (v versionStore) FunctionVersions(context.Context, string, string) ([]store.FunctionVersion, error) {
	return v.vs, nil
}

// TestKeepDigests: the newest earlier versions' distinct digests, not the
// current one, at most MaxKeepDigests; none from a store without versions.
func TestKeepDigests(t *testing.T) {
	vs := []store.FunctionVersion{{Number: 6, Digest: "d"}, {Number: 5, Digest: "c"}, {Number: 4, Digest: "d"},
		{Number: 3, Digest: "c"}, {Number: 2, Digest: "b"}, {Number: 1, Digest: "a"}}
	f := &Fleet{cfg: Config{Store: versionStore{vs: vs}}, log: slog.New(slog.DiscardHandler)}
	got := f.keepDigests(t.Context(), store.Function{Module: "_", Name: "f", Digest: "d"})
	if want := []string{"c", "b"}; !slices.Equal(got, want) {
		t.Fatalf("KeepDigests = %v, want %v", got, want)
	}
	f.cfg.Store = nil
	if got := f.keepDigests(t.Context(), store.Function{Digest: "d"}); got != nil {
		t.Fatalf("KeepDigests without a version store = %v", got)
	}
}
