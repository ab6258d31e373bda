package protocol

import (
	"sort"
	"strings"
	"testing"
	"time"
)

func TestActivationIDsSortAndCarryTime(t *testing.T) {
	// A generator of its own: the process's one has seen later times (an
	// earlier -count run), and would keep its order rather than this time.
	var g idGen
	now := time.UnixMilli(1_764_000_000_123)
	var ids []string
	for i := range 1000 {
		ids = append(ids, g.next(now.Add(time.Duration(i/100)*time.Millisecond)))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids made in order do not sort in order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if len(id) != 26 || seen[id] {
			t.Fatalf("bad or duplicate id %q", id)
		}
		seen[id] = true
	}
	got, ok := ActivationTime(ids[0])
	if !ok || !got.Equal(now) {
		t.Fatalf("time %v %v, want %v", got, ok, now)
	}
	if _, ok := ActivationTime("not-an-id"); ok {
		t.Fatal("accepted garbage")
	}
}

func TestFirstActivationIDBoundsTheIDsOfItsTime(t *testing.T) {
	var g idGen
	at := time.UnixMilli(1_764_000_000_123)
	first := FirstActivationID(at)
	if got, ok := ActivationTime(first); !ok || !got.Equal(at) {
		t.Fatalf("FirstActivationID(%v) = %q, which carries %v %v", at, first, got, ok)
	}
	for range 100 {
		before, same, after := g.next(at.Add(-time.Millisecond)), g.next(at), g.next(at.Add(time.Millisecond))
		if !(before < first && first <= same && same < after) {
			t.Fatalf("ids %q (1 ms before), %q (same ms), %q (after) around FirstActivationID %q", before, same, after, first)
		}
		g = idGen{} // a fresh generator: random bits again, not incremented ones
	}
	if FirstActivationID(at.Add(500*time.Microsecond)) != first {
		t.Fatal("FirstActivationID does not truncate to the millisecond as ids do")
	}
	if got := FirstActivationID(time.Unix(-5, 0)); got != strings.Repeat("0", 26) {
		t.Fatalf("FirstActivationID before 1970 = %q", got)
	}
}
