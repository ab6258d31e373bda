package activationid

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
	got, ok := Time(ids[0])
	if !ok || !got.Equal(now) {
		t.Fatalf("time %v %v, want %v", got, ok, now)
	}
	if _, ok := Time("not-an-id"); ok {
		t.Fatal("accepted garbage")
	}
}

func TestFirstBoundsTheIDsOfItsTime(t *testing.T) {
	var g idGen
	at := time.UnixMilli(1_764_000_000_123)
	first := First(at)
	if got, ok := Time(first); !ok || !got.Equal(at) {
		t.Fatalf("First(%v) = %q, which carries %v %v", at, first, got, ok)
	}
	for range 100 {
		before, same, after := g.next(at.Add(-time.Millisecond)), g.next(at), g.next(at.Add(time.Millisecond))
		if !(before < first && first <= same && same < after) {
			t.Fatalf("ids %q (1 ms before), %q (same ms), %q (after) around First %q", before, same, after, first)
		}
		g = idGen{} // a fresh generator: random bits again, not incremented ones
	}
	if First(at.Add(500*time.Microsecond)) != first {
		t.Fatal("First does not truncate to the millisecond as ids do")
	}
	if got := First(time.Unix(-5, 0)); got != strings.Repeat("0", 26) {
		t.Fatalf("First before 1970 = %q", got)
	}
}
