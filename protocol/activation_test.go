package protocol

import (
	"sort"
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
