package state

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wispfn/wisp/protocol"
)

// TestApplyDesired: a delta changes only what it names, only on the set
// whose digest is its base, survives a reopen with its digest, and keeps
// Needed's count of the digests the set names; a delta on another base
// changes nothing.
func TestApplyDesired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2, d3 := protocol.SetDigest{1}, protocol.SetDigest{2}, protocol.SetDigest{3}
	err = s.SetDesiredSet(&protocol.DesiredSet{Digest: d1, Functions: []protocol.DesiredFunction{
		{Module: "_", Name: "f", Digest: "sha256:f1", KeepDigests: []string{"sha256:f0"}},
		{Module: "_", Name: "g", Digest: "sha256:g1", Secrets: []protocol.Secret{{Name: "k", Value: []byte("v")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	needed := func(ds ...string) []string {
		t.Helper()
		got, err := s.Needed(ds)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	all := []string{"sha256:f0", "sha256:f1", "sha256:f2", "sha256:g1", "sha256:h1"}
	if got := needed(all...); !slices.Equal(got, []string{"sha256:f0", "sha256:f1", "sha256:g1"}) {
		t.Fatalf("Needed = %v", got)
	}
	if _, err := s.ApplyDesired(&protocol.DesiredDelta{Base: d2, Result: d3, Removes: []protocol.FunctionName{{Module: "_", Name: "f"}}}); !errors.Is(err, ErrDesiredBase) {
		t.Fatalf("a delta on another base: %v", err)
	}
	triggers, err := s.ApplyDesired(&protocol.DesiredDelta{Base: d1, Result: d2,
		Upserts: []protocol.DesiredFunction{{Module: "_", Name: "f", Digest: "sha256:f2", KeepDigests: []string{"sha256:f1"}}, {Module: "_", Name: "h", Digest: "sha256:h1", LocalTopics: []string{"t"}}},
		Removes: []protocol.FunctionName{{Module: "_", Name: "g"}, {Module: "_", Name: "unknown"}}})
	if err != nil || !triggers {
		t.Fatalf("ApplyDesired: triggers %v, %v (h has a topic)", triggers, err)
	}
	if got := needed(all...); !slices.Equal(got, []string{"sha256:f1", "sha256:f2", "sha256:h1"}) {
		t.Fatalf("Needed after the delta = %v", got)
	}
	if _, ok := s.DesiredFunction("_", "g"); ok {
		t.Fatal("g was removed, and is still there")
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	if s.DesiredDigest() != d2 {
		t.Fatalf("digest after a reopen %x, want %x", s.DesiredDigest(), d2)
	}
	fs, err := s.Desired()
	if err != nil || len(fs) != 2 || fs[0].Digest != "sha256:f2" || fs[1].Name != "h" {
		t.Fatalf("after a reopen: %+v %v", fs, err)
	}
	if got := needed(all...); !slices.Equal(got, []string{"sha256:f1", "sha256:f2", "sha256:h1"}) {
		t.Fatalf("Needed after a reopen = %v", got)
	}
	if triggers, err := s.ApplyDesired(&protocol.DesiredDelta{Base: d2, Result: d3, Upserts: []protocol.DesiredFunction{{Module: "_", Name: "f", Digest: "sha256:f3"}}}); err != nil || triggers {
		t.Fatalf("a delta touching no triggers: triggers %v, %v", triggers, err)
	}
}
