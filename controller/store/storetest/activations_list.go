package storetest

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// The contract of ListActivations newest first, its filters (agents,
// source, status, until, before) and the recorded order followers read.

// listFixture records activations 0..29 as testActivationFilters does, with
// every fifth one failed and the sources cycling, in modules of two owners.
// It returns the selector of ids in ascending order.
func listFixture(t *testing.T, s store.Store) (sel func(keep func(i int) bool) []string, fnOf func(i int) [2]string) {
	t.Helper()
	ctx := t.Context()
	for _, name := range []string{"alice", "bob"} {
		_, err := s.CreateSubject(ctx, store.Subject{Name: name, TokenHash: tokenHash(name)})
		noErr(t, "CreateSubject", err)
	}
	noErr(t, "CreateModule m", s.CreateModule(ctx, "m", "alice"))
	noErr(t, "CreateModule n", s.CreateModule(ctx, "n", "bob"))
	fns := [][2]string{{"m", "f"}, {"m", "g"}, {"n", "f"}, {"_", "h"}, {"mm", "f"}}
	sources := []string{"api", "mqtt", "local-api", "local-mqtt"}
	var batch []store.ActivationWithSinks
	for i := 29; i >= 0; i-- {
		fn := fns[i%len(fns)]
		a := newActivation(i, fn[0], fn[1])
		a.Source = sources[i%len(sources)]
		if i%5 == 2 {
			a.Code, a.Message, a.Output = 3, "trap", nil
		}
		batch = append(batch, store.ActivationWithSinks{Activation: a})
	}
	mustRecordBatch(t, s, batch[:13], 13)
	mustRecordBatch(t, s, batch[13:], 17)
	sel = func(keep func(i int) bool) []string {
		out := []string{}
		for i := range 30 {
			if keep(i) {
				out = append(out, actID(i))
			}
		}
		return out
	}
	return sel, func(i int) [2]string { return fns[i%len(fns)] }
}

func reversed(ids []string) []string {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

// testActivationListFilters checks every filter, in both id orders: newest
// first is exactly the reverse of oldest first.
func testActivationListFilters(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	sel, fnOf := listFixture(t, s)
	all := func(int) bool { return true }
	tests := []struct {
		name string
		f    store.ActivationFilter
		keep func(i int) bool
	}{
		{"all", store.ActivationFilter{}, all},
		{"module", store.ActivationFilter{Module: "m"}, func(i int) bool { return fnOf(i)[0] == "m" }},
		{"function", store.ActivationFilter{Function: "f"}, func(i int) bool { return fnOf(i)[1] == "f" }},
		{"module and function", store.ActivationFilter{Module: "m", Function: "f"}, func(i int) bool { return fnOf(i) == [2]string{"m", "f"} }},
		{"one agent", store.ActivationFilter{Agents: []string{agentID(1)}}, func(i int) bool { return i%3 == 1 }},
		{"two agents", store.ActivationFilter{Agents: []string{agentID(0), agentID(2)}}, func(i int) bool { return i%3 != 1 }},
		{"no agent matches", store.ActivationFilter{Agents: []string{"ag_nobody"}}, func(int) bool { return false }},
		{"an empty agent list selects none", store.ActivationFilter{Agents: []string{}}, func(int) bool { return false }},
		{"agent and function", store.ActivationFilter{Agents: []string{agentID(1)}, Function: "f"},
			func(i int) bool { return i%3 == 1 && fnOf(i)[1] == "f" }},
		{"source", store.ActivationFilter{Source: "local-api"}, func(i int) bool { return i%4 == 2 }},
		{"status error", store.ActivationFilter{Status: store.StatusError}, func(i int) bool { return i%5 == 2 }},
		{"status success", store.ActivationFilter{Status: store.StatusSuccess}, func(i int) bool { return i%5 != 2 }},
		{"status error and module", store.ActivationFilter{Status: store.StatusError, Module: "m"},
			func(i int) bool { return i%5 == 2 && fnOf(i)[0] == "m" }},
		{"since and until", store.ActivationFilter{Since: actBase.Add(10 * time.Second), Until: actBase.Add(20 * time.Second)},
			func(i int) bool { return i >= 10 && i < 20 }},
		{"until, in another zone, between two", store.ActivationFilter{Until: actBase.Add(4*time.Second + time.Millisecond).In(time.FixedZone("Y", 3600))},
			func(i int) bool { return i <= 4 }},
		{"owner", store.ActivationFilter{Owner: "alice"}, func(i int) bool { return fnOf(i)[0] == "m" }},
		{"owner of no module", store.ActivationFilter{Owner: "carol"}, func(int) bool { return false }},
		{"owner and status", store.ActivationFilter{Owner: "bob", Status: store.StatusError},
			func(i int) bool { return fnOf(i)[0] == "n" && i%5 == 2 }},
		{"before", store.ActivationFilter{Before: actID(7)}, func(i int) bool { return i < 7 }},
		{"before an id not stored", store.ActivationFilter{Before: actID(7) + "0"}, func(i int) bool { return i <= 7 }},
		{"before the first", store.ActivationFilter{Before: actID(0)}, func(int) bool { return false }},
		{"after and before", store.ActivationFilter{After: actID(3), Before: actID(9)}, func(i int) bool { return i > 3 && i < 9 }},
		{"before and module", store.ActivationFilter{Module: "m", Before: actID(20)}, func(i int) bool { return i < 20 && fnOf(i)[0] == "m" }},
		{"every filter", store.ActivationFilter{Module: "m", Function: "f", Agents: []string{agentID(0)}, Source: "local-mqtt",
			Status: store.StatusSuccess, Since: actBase, Until: actBase.Add(time.Hour), Owner: "alice", After: actID(0), Before: actID(29)},
			func(i int) bool {
				return fnOf(i) == [2]string{"m", "f"} && i%3 == 0 && i%4 == 3 && i%5 != 2 && i > 0 && i < 29
			}},
	}
	for _, tt := range tests {
		want := sel(tt.keep)
		for _, order := range []store.ActivationOrder{store.OldestFirst, store.NewestFirst} {
			f := tt.f
			f.Order = order
			got, err := s.ListActivations(ctx, f)
			name := fmt.Sprintf("%s (order %d)", tt.name, order)
			noErr(t, name, err)
			if order == store.NewestFirst {
				equal(t, name, ids(got), reversed(want))
			} else {
				equal(t, name, ids(got), want)
			}
		}
	}
	// Limit cuts the newest first.
	got, err := s.ListActivations(ctx, store.ActivationFilter{Order: store.NewestFirst, Limit: 3})
	noErr(t, "newest 3", err)
	equal(t, "newest 3", ids(got), []string{actID(29), actID(28), actID(27)})
	got, err = s.ListActivations(ctx, store.ActivationFilter{Order: store.NewestFirst, Status: store.StatusError, Limit: 2})
	noErr(t, "newest 2 failed", err)
	equal(t, "newest 2 failed", ids(got), []string{actID(27), actID(22)})

	// Paging newest first with Before gives each once, in order.
	for _, f := range []store.ActivationFilter{{Limit: 4}, {Module: "m", Limit: 3}, {Agents: []string{agentID(2)}, Limit: 2}} {
		want, err := s.ListActivations(ctx, store.ActivationFilter{Module: f.Module, Agents: f.Agents, Order: store.NewestFirst})
		noErr(t, "whole list", err)
		f.Order = store.NewestFirst
		var paged []string
		for {
			page, err := s.ListActivations(ctx, f)
			noErr(t, "page", err)
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			f.Before = page[len(page)-1].ID
		}
		equal(t, fmt.Sprintf("paged newest first %+v", f), paged, ids(want))
	}
}

// testActivationPagingConcurrent pages newest first while other goroutines
// record newer activations (and older ones, as an outbox replay would): the
// pages hold every activation that existed when paging began exactly once,
// in descending order, and nothing newer than the first page's first.
func testActivationPagingConcurrent(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	const existing = 400
	var batch []store.ActivationWithSinks
	for i := 1000; i < 1000+existing; i++ {
		batch = append(batch, store.ActivationWithSinks{Activation: newActivation(i, "m", "f")})
	}
	mustRecordBatch(t, s, batch, existing)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var werr atomic.Value
	for w := range 2 {
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				i := 5000 + w*100000 + n // newer than every existing one
				if w == 1 {
					i = n // older than every existing one: a late replay
				}
				if n >= 999 && w == 1 {
					return
				}
				if _, err := s.RecordActivations(ctx, []store.ActivationWithSinks{{Activation: newActivation(i, "m", "f")}}); err != nil {
					werr.Store(err)
					return
				}
			}
		})
	}
	var paged []string
	f := store.ActivationFilter{Order: store.NewestFirst, Limit: 7, Module: "m"}
	first := ""
	for {
		page, err := s.ListActivations(ctx, f)
		noErr(t, "page", err)
		if len(page) == 0 {
			break
		}
		if first == "" {
			first = page[0].ID
		}
		paged = append(paged, ids(page)...)
		f.Before = page[len(page)-1].ID
	}
	stop.Store(true)
	wg.Wait()
	if err, _ := werr.Load().(error); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(paged, func(a, b string) int { return -cmpString(a, b) }) {
		t.Fatalf("pages not in descending order")
	}
	seen := map[string]bool{}
	for _, id := range paged {
		if seen[id] {
			t.Fatalf("%s listed twice", id)
		}
		seen[id] = true
		if id > first {
			t.Fatalf("%s listed after the first page began at %s", id, first)
		}
	}
	for i := 1000; i < 1000+existing; i++ {
		if !seen[actID(i)] {
			t.Fatalf("%s existed when paging began and was not listed (a gap)", actID(i))
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// testActivationRecordedOrder: OrderRecorded lists in the order recorded,
// whatever the ids; (RecordedAfter, RecordedAfterID) pages through it once
// each, also through a batch recorded at one instant; the filters apply.
func testActivationRecordedOrder(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	record := func(from, to int, fn string) {
		var batch []store.ActivationWithSinks
		for i := from; i < to; i++ {
			a := newActivation(i, "m", fn)
			if i%2 == 1 {
				a.Code, a.Message, a.Output = 3, "trap", nil
			}
			batch = append(batch, store.ActivationWithSinks{Activation: a})
		}
		mustRecordBatch(t, s, batch, to-from)
		// The next batch is recorded at a later microsecond.
		for t0 := time.Now(); time.Since(t0) < 2*time.Millisecond; {
			time.Sleep(time.Millisecond)
		}
	}
	record(100, 110, "f") // recorded first
	record(0, 10, "g")    // older ids, recorded later: an outbox replay
	record(50, 60, "f")

	var want []string
	for _, r := range [][2]int{{100, 110}, {0, 10}, {50, 60}} {
		for i := r[0]; i < r[1]; i++ {
			want = append(want, actID(i))
		}
	}
	got, err := s.ListActivations(ctx, store.ActivationFilter{Order: store.OrderRecorded})
	noErr(t, "recorded order", err)
	equal(t, "recorded order", ids(got), want)
	for i := 1; i < len(got); i++ {
		if got[i].Recorded.Before(got[i-1].Recorded) {
			t.Fatalf("%s recorded %s before %s recorded %s", got[i].ID, got[i].Recorded, got[i-1].ID, got[i-1].Recorded)
		}
	}

	// Paging by (Recorded, ID), 3 at a time: batches of 10 share one
	// recorded time, so the id must break the ties.
	var paged []string
	f := store.ActivationFilter{Order: store.OrderRecorded, Limit: 3}
	for {
		page, err := s.ListActivations(ctx, f)
		noErr(t, "page", err)
		if len(page) == 0 {
			break
		}
		paged = append(paged, ids(page)...)
		last := page[len(page)-1]
		f.RecordedAfter, f.RecordedAfterID = last.Recorded, last.ID
	}
	equal(t, "paged in recorded order", paged, want)

	// From the middle of the second batch, with filters.
	mid := got[14]
	got, err = s.ListActivations(ctx, store.ActivationFilter{Order: store.OrderRecorded, RecordedAfter: mid.Recorded, RecordedAfterID: mid.ID,
		Status: store.StatusError})
	noErr(t, "after the middle", err)
	equal(t, "failed after the middle", ids(got), []string{actID(5), actID(7), actID(9), actID(51), actID(53), actID(55), actID(57), actID(59)})
	got, err = s.ListActivations(ctx, store.ActivationFilter{Order: store.OrderRecorded, RecordedAfter: mid.Recorded, RecordedAfterID: mid.ID,
		Function: "f", Agents: []string{agentID(1)}})
	noErr(t, "function and agent after the middle", err)
	equal(t, "function and agent after the middle", ids(got), []string{actID(52), actID(55), actID(58)})
	got, err = s.ListActivations(ctx, store.ActivationFilter{Order: store.OrderRecorded, RecordedAfter: time.Now().Add(time.Hour)})
	noErr(t, "after now", err)
	equal(t, "after now", ids(got), []string{})
}
