package scheduler

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAPP(t *testing.T) {
	src := `
- tag_a:
    - workers: [edge1, edge2]
      strategy: best-first
      invalidate: {capacity_used: 50%, max_concurrent_invocations: 3}
    - workers: "*"
      strategy: random
  followup: default
- default:
    - workers: [edge3]
`
	got, err := ParseAPP([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Script{Tags: []Tag{
		{Name: "tag_a", Followup: FollowupDefault, Blocks: []Block{
			{Workers: []string{"edge1", "edge2"}, Strategy: StrategyBestFirst, Invalidate: Invalidate{CapacityUsed: 50, MaxConcurrentInvocations: 3}},
			{AllWorkers: true, Strategy: StrategyRandom},
		}},
		{Name: "default", Followup: FollowupFail, Blocks: []Block{{Workers: []string{"edge3"}, Strategy: StrategyBestFirst}}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseAPP =\n%+v\nwant\n%+v", got, want)
	}
	if tag, ok := got.Tag("default"); !ok || tag.Blocks[0].Workers[0] != "edge3" {
		t.Fatalf("Tag(default) = %+v, %v", tag, ok)
	}
}

func TestParseAPPErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"empty", "", "empty"},
		{"not yaml", "- a: [", "did not find"},
		{"map at top", "a: b", "non-empty list"},
		{"empty list", "[]", "non-empty list"},
		{"scalar item", "- x", "each list item"},
		{"no blocks", "- a: []", "non-empty list of blocks"},
		{"two tags", "- a: [{workers: '*'}]\n  b: [{workers: '*'}]", "two tags"},
		{"only followup", "- followup: fail", "names no tag"},
		{"bad followup", "- a: [{workers: '*'}]\n  followup: maybe", "followup"},
		{"default loops", "- default: [{workers: '*'}]\n  followup: default", "itself"},
		{"dup tag", "- a: [{workers: '*'}]\n- a: [{workers: '*'}]", "twice"},
		{"no workers", "- a: [{strategy: random}]", "needs workers"},
		{"empty workers", "- a: [{workers: []}]", "must not be empty"},
		{"bad workers", "- a: [{workers: edge1}]", "list of agent names"},
		{"bad strategy", "- a: [{workers: '*', strategy: fastest}]", "strategy"},
		{"unknown key", "- a: [{workers: '*', worker: x}]", "unknown block key"},
		{"bad capacity", "- a: [{workers: '*', invalidate: {capacity_used: 150%}}]", "capacity_used"},
		{"bad mci", "- a: [{workers: '*', invalidate: {max_concurrent_invocations: -1}}]", "max_concurrent"},
		{"unknown invalidate", "- a: [{workers: '*', invalidate: {cpu: 1}}]", "unknown invalidate key"},
		{"two docs", "- a: [{workers: '*'}]\n---\n- b: [{workers: '*'}]", "more than one"},
		{"too big", strings.Repeat("#", MaxScriptBytes+1), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAPP([]byte(tc.src))
			if !errors.Is(err, ErrInvalidScript) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseAPP(%q) = %v, want ErrInvalidScript mentioning %q", tc.src, err, tc.want)
			}
		})
	}
}

func FuzzParseAPP(f *testing.F) {
	f.Add([]byte("- a:\n    - workers: [e1]\n      strategy: random\n      invalidate: {capacity_used: 50%}\n  followup: default\n"))
	f.Add([]byte("- default: [{workers: '*'}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("- a: [{workers: [&x y, *x]}]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := ParseAPP(src)
		if err != nil {
			if !errors.Is(err, ErrInvalidScript) {
				t.Fatalf("error does not wrap ErrInvalidScript: %v", err)
			}
			return
		}
		if len(s.Tags) == 0 {
			t.Fatal("valid script without tags")
		}
		for _, tag := range s.Tags {
			if tag.Name == "" || len(tag.Blocks) == 0 {
				t.Fatalf("invalid tag accepted: %+v", tag)
			}
			for _, b := range tag.Blocks {
				if !b.AllWorkers && len(b.Workers) == 0 {
					t.Fatalf("block without workers accepted: %+v", b)
				}
			}
		}
	})
}
