package storetest

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

// The contract of activations and the sink delivery queue.

// actID returns the i-th test activation id: 26 characters, like
// activationid.New's, in the order of i.
func actID(i int) string { return fmt.Sprintf("01TEST%020d", i) }

// actBase is when test activation 0 started; activation i starts i seconds later.
var actBase = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// newActivation returns the ok activation actID(i) of module/function.
func newActivation(i int, module, function string) store.Activation {
	return store.Activation{
		ID:       actID(i),
		Module:   module,
		Function: function,
		Digest:   "sha256:" + strings.Repeat("ab", 32),
		Agent:    agentID(i % 3),
		Source:   "local-mqtt",
		Output:   fmt.Appendf(nil, `{"n":%d}`, i),
		Started:  actBase.Add(time.Duration(i) * time.Second),
		Duration: time.Duration(i)*time.Millisecond + 7*time.Nanosecond,
	}
}

// sinksOf returns n distinct sink JSONs.
func sinksOf(n int, tag string) [][]byte {
	var sinks [][]byte
	for i := range n {
		sinks = append(sinks, fmt.Appendf(nil, `{"type":"couchdb","params":{"url":"http://db/%s%d"}}`, tag, i))
	}
	return sinks
}

func ids(as []store.Activation) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

// deliveryKeys returns "id/index" of each delivery, in order.
func deliveryKeys(ds []store.SinkDelivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s/%d", d.ActivationID, d.SinkIndex))
	}
	return out
}

func mustRecord(t *testing.T, s store.Store, a store.Activation, sinks [][]byte) {
	t.Helper()
	created, err := s.RecordActivation(t.Context(), a, sinks)
	noErr(t, "RecordActivation "+a.ID, err)
	if !created {
		t.Fatalf("RecordActivation %s: created = false for a new id", a.ID)
	}
}

func mustRecordBatch(t *testing.T, s store.Store, as []store.ActivationWithSinks, want int) {
	t.Helper()
	n, err := s.RecordActivations(t.Context(), as)
	noErr(t, "RecordActivations", err)
	if n != want {
		t.Fatalf("RecordActivations of %d: created %d, want %d", len(as), n, want)
	}
}

// allPending returns every queued delivery due at the far future.
func allPending(t *testing.T, s store.Store) []store.SinkDelivery {
	t.Helper()
	ds, err := s.PendingDeliveries(t.Context(), actBase.AddDate(100, 0, 0), store.MaxActivationLimit)
	noErr(t, "PendingDeliveries", err)
	return ds
}

func testActivationRecordGet(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	_, err := s.GetActivation(ctx, actID(1))
	wantErr(t, "GetActivation of an unknown id", err, store.ErrNotFound)

	tests := []struct {
		name   string
		mutate func(a *store.Activation)
	}{
		{"ok", func(*store.Activation) {}},
		{"error, nil output", func(a *store.Activation) {
			a.Code, a.Message, a.Output, a.Agent = 42, "function trapped: unreachable", nil, ""
		}},
		{"empty output stays empty", func(a *store.Activation) { a.Output = []byte{} }},
		{"bytes kept", func(a *store.Activation) { a.Output = []byte(" {\"b\":1, \"a\":\"\u00e9\"}\n") }},
		{"started in another zone, sub-microsecond", func(a *store.Activation) {
			a.Started = time.Date(2031, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
		}},
		{"zero started", func(a *store.Activation) { a.Started = time.Time{} }},
		{"long duration, negative code", func(a *store.Activation) {
			a.Duration, a.Code = 90*time.Hour+time.Nanosecond, -1
		}},
	}
	for i, tt := range tests {
		in := newActivation(i, "m", "f")
		in.Recorded = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) // ignored: the store sets it
		tt.mutate(&in)
		before := time.Now()
		mustRecord(t, s, in, nil)
		after := time.Now()
		got, err := s.GetActivation(ctx, in.ID)
		noErr(t, tt.name+": GetActivation", err)
		wantTime(t, tt.name+": Recorded", got.Recorded, before, after)
		want := in
		want.Started = in.Started.UTC().Truncate(time.Microsecond)
		if in.Started.IsZero() {
			want.Started = time.Time{}
		}
		want.Recorded = got.Recorded
		equal(t, tt.name+": GetActivation", got, want)
		equal(t, tt.name+": Output", got.Output, in.Output)
	}

	for _, id := range []string{"", "a\x00b"} {
		_, err = s.RecordActivation(ctx, store.Activation{ID: id, Module: "m", Function: "f"}, sinksOf(1, "x"))
		wantErr(t, fmt.Sprintf("RecordActivation with id %q", id), err, store.ErrInvalid)
	}
	all, err := s.ListActivations(ctx, store.ActivationFilter{})
	noErr(t, "ListActivations", err)
	if len(all) != len(tests) {
		t.Fatalf("ListActivations = %v, want the %d recorded", ids(all), len(tests))
	}
	equal(t, "deliveries of activations recorded without sinks", allPending(t, s), []store.SinkDelivery{})
}

func testActivationDuplicate(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	first := newActivation(1, "m", "f")
	mustRecord(t, s, first, sinksOf(2, "first"))
	want, err := s.GetActivation(ctx, first.ID)
	noErr(t, "GetActivation", err)
	wantPending := allPending(t, s)
	equal(t, "deliveries queued", deliveryKeys(wantPending), []string{actID(1) + "/0", actID(1) + "/1"})

	// A replay, even one that differs, changes nothing.
	replay := newActivation(1, "other", "g")
	replay.Output = []byte(`"replayed"`)
	for range 2 {
		created, err := s.RecordActivation(ctx, replay, sinksOf(3, "replay"))
		noErr(t, "RecordActivation of a known id", err)
		if created {
			t.Fatal("RecordActivation of a known id: created = true")
		}
		n, err := s.RecordActivations(ctx, []store.ActivationWithSinks{{Activation: replay, Sinks: sinksOf(3, "replay")}})
		noErr(t, "RecordActivations of a known id", err)
		if n != 0 {
			t.Fatalf("RecordActivations of a known id: created %d", n)
		}
	}
	got, err := s.GetActivation(ctx, first.ID)
	noErr(t, "GetActivation after replays", err)
	equal(t, "activation after replays", got, want)
	equal(t, "deliveries after replays", allPending(t, s), wantPending)

	// Once delivered, a replay does not queue the delivery again.
	noErr(t, "DeliveryDone", s.DeliveryDone(ctx, first.ID, 0))
	noErr(t, "DeliveryDone", s.DeliveryDone(ctx, first.ID, 1))
	if created, err := s.RecordActivation(ctx, first, sinksOf(2, "first")); err != nil || created {
		t.Fatalf("replay after delivery: created %v, %v", created, err)
	}
	equal(t, "deliveries after a replay of a delivered activation", allPending(t, s), []store.SinkDelivery{})
}

func testActivationBatch(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustRecordBatch(t, s, nil, 0)
	mustRecordBatch(t, s, []store.ActivationWithSinks{}, 0)

	with := func(i int, output string, sinks int) store.ActivationWithSinks {
		a := newActivation(i, "m", "f")
		a.Output = []byte(output)
		return store.ActivationWithSinks{Activation: a, Sinks: sinksOf(sinks, output)}
	}
	// Out of order, with a duplicate inside: the first of an id counts.
	mustRecordBatch(t, s, []store.ActivationWithSinks{
		with(3, `"3a"`, 1), with(1, `"1a"`, 2), with(3, `"3b"`, 3), with(2, `"2a"`, 0),
	}, 3)
	// Across batches: only 4 and 5 are new.
	mustRecordBatch(t, s, []store.ActivationWithSinks{
		with(5, `"5a"`, 1), with(2, `"2b"`, 1), with(1, `"1b"`, 1), with(4, `"4a"`, 0), with(5, `"5b"`, 1),
	}, 2)
	all, err := s.ListActivations(ctx, store.ActivationFilter{})
	noErr(t, "ListActivations", err)
	equal(t, "ids", ids(all), []string{actID(1), actID(2), actID(3), actID(4), actID(5)})
	for i, want := range []string{`"1a"`, `"2a"`, `"3a"`, `"4a"`, `"5a"`} {
		if string(all[i].Output) != want {
			t.Fatalf("activation %s: output %s, want %s (the first of its id)", all[i].ID, all[i].Output, want)
		}
		if i > 0 && !all[i].Recorded.Equal(all[0].Recorded) && i < 3 {
			t.Fatalf("one batch, two Recorded times: %v and %v", all[0].Recorded, all[i].Recorded)
		}
	}
	pending := allPending(t, s)
	equal(t, "deliveries", deliveryKeys(pending),
		[]string{actID(1) + "/0", actID(1) + "/1", actID(3) + "/0", actID(5) + "/0"})
	equal(t, "sink of 3 (the first's)", string(pending[2].Sink), string(sinksOf(1, `"3a"`)[0]))

	// A batch holding an invalid id records nothing.
	_, err = s.RecordActivations(ctx, []store.ActivationWithSinks{with(6, `"6"`, 1), {Activation: store.Activation{ID: ""}}})
	wantErr(t, "RecordActivations with an empty id", err, store.ErrInvalid)
	if _, err := s.GetActivation(ctx, actID(6)); err == nil {
		t.Fatal("a failed batch recorded part of itself")
	}
	equal(t, "deliveries after a failed batch", deliveryKeys(allPending(t, s)), deliveryKeys(pending))
}

func testActivationFilters(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	// 0..29, in module/function pairs that cycle; recorded out of order.
	fns := [][2]string{{"m", "f"}, {"m", "g"}, {"n", "f"}, {"_", "h"}, {"mm", "f"}}
	var batch []store.ActivationWithSinks
	for i := 29; i >= 0; i-- {
		fn := fns[i%len(fns)]
		batch = append(batch, store.ActivationWithSinks{Activation: newActivation(i, fn[0], fn[1])})
	}
	mustRecordBatch(t, s, batch[:10], 10)
	mustRecordBatch(t, s, batch[10:], 20)
	sel := func(keep func(i int) bool) []string {
		out := []string{}
		for i := range 30 {
			if keep(i) {
				out = append(out, actID(i))
			}
		}
		return out
	}
	of := func(pairs ...int) func(int) bool {
		return func(i int) bool { return slices.Contains(pairs, i%len(fns)) }
	}
	tests := []struct {
		name string
		f    store.ActivationFilter
		want []string
	}{
		{"all", store.ActivationFilter{}, sel(func(int) bool { return true })},
		{"module", store.ActivationFilter{Module: "m"}, sel(of(0, 1))},
		{"module not a prefix of another", store.ActivationFilter{Module: "mm"}, sel(of(4))},
		{"function", store.ActivationFilter{Function: "f"}, sel(of(0, 2, 4))},
		{"module and function", store.ActivationFilter{Module: "m", Function: "f"}, sel(of(0))},
		{"unknown module", store.ActivationFilter{Module: "x"}, []string{}},
		{"unknown function", store.ActivationFilter{Module: "m", Function: "x"}, []string{}},
		{"since", store.ActivationFilter{Since: actBase.Add(25 * time.Second)}, sel(func(i int) bool { return i >= 25 })},
		{"since, in another zone, between two",
			store.ActivationFilter{Since: actBase.Add(24*time.Second + time.Millisecond).In(time.FixedZone("Y", -7200))},
			sel(func(i int) bool { return i >= 25 })},
		{"since and function", store.ActivationFilter{Function: "f", Since: actBase.Add(20 * time.Second)},
			sel(func(i int) bool { return i >= 20 && of(0, 2, 4)(i) })},
		{"after", store.ActivationFilter{After: actID(26)}, sel(func(i int) bool { return i > 26 })},
		{"after an id not stored", store.ActivationFilter{After: actID(26) + "0"}, sel(func(i int) bool { return i > 26 })},
		{"after the last", store.ActivationFilter{After: actID(29)}, []string{}},
		{"after and module", store.ActivationFilter{Module: "m", After: actID(10)}, sel(func(i int) bool { return i > 10 && of(0, 1)(i) })},
		{"limit", store.ActivationFilter{Limit: 4}, sel(func(i int) bool { return i < 4 })},
		{"limit, function and since", store.ActivationFilter{Function: "f", Since: actBase.Add(3 * time.Second), Limit: 3},
			[]string{actID(4), actID(5), actID(7)}},
		{"limit and after", store.ActivationFilter{After: actID(3), Limit: 2}, []string{actID(4), actID(5)}},
		{"negative limit: the default", store.ActivationFilter{Limit: -1}, sel(func(int) bool { return true })},
	}
	for _, tt := range tests {
		got, err := s.ListActivations(ctx, tt.f)
		noErr(t, tt.name, err)
		equal(t, tt.name, ids(got), tt.want)
	}

	// Paging through a module with After gives each once, in order.
	var paged []string
	f := store.ActivationFilter{Module: "m", Limit: 4}
	for {
		page, err := s.ListActivations(ctx, f)
		noErr(t, "page", err)
		if len(page) == 0 {
			break
		}
		paged = append(paged, ids(page)...)
		f.After = page[len(page)-1].ID
	}
	equal(t, "paged", paged, sel(of(0, 1)))
}

func testActivationLimits(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	const n = store.MaxActivationLimit + 50
	var batch []store.ActivationWithSinks
	for i := range n {
		batch = append(batch, store.ActivationWithSinks{Activation: newActivation(i, "m", "f"), Sinks: sinksOf(1, "s")})
	}
	mustRecordBatch(t, s, batch, n)
	for _, tt := range []struct {
		limit, want int
	}{{0, store.DefaultActivationLimit}, {store.MaxActivationLimit + 1, store.MaxActivationLimit}, {1 << 30, store.MaxActivationLimit}} {
		as, err := s.ListActivations(ctx, store.ActivationFilter{Module: "m", Limit: tt.limit})
		noErr(t, "ListActivations", err)
		if len(as) != tt.want || as[0].ID != actID(0) || as[len(as)-1].ID != actID(tt.want-1) {
			t.Fatalf("ListActivations with limit %d: %d from %s, want %d from %s", tt.limit, len(as), as[0].ID, tt.want, actID(0))
		}
		ds, err := s.PendingDeliveries(ctx, time.Now().Add(time.Hour), tt.limit)
		noErr(t, "PendingDeliveries", err)
		if len(ds) != tt.want || ds[0].ActivationID != actID(0) {
			t.Fatalf("PendingDeliveries with limit %d: %d, want %d", tt.limit, len(ds), tt.want)
		}
	}
}

// testActivationDeleteFunction: deleting a function, or its module, keeps
// its activations and their queued deliveries.
func testActivationDeleteFunction(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	code, _ := Code("deleted")
	mustCreateFunction(t, s, "m", "f", code)
	mustRecord(t, s, newActivation(1, "m", "f"), sinksOf(1, "deleted"))
	_, err := s.DeleteFunction(ctx, "m", "f")
	noErr(t, "DeleteFunction", err)
	noErr(t, "DeleteModule", s.DeleteModule(ctx, "m"))
	got, err := s.ListActivations(ctx, store.ActivationFilter{Module: "m", Function: "f"})
	noErr(t, "ListActivations", err)
	equal(t, "activations of a deleted function", ids(got), []string{actID(1)})
	equal(t, "deliveries of a deleted function", deliveryKeys(allPending(t, s)), []string{actID(1) + "/0"})
}

func testDeliveriesQueued(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	failed := newActivation(2, "m", "f")
	failed.Code, failed.Message, failed.Output = 7, "boom", nil
	before := time.Now()
	mustRecord(t, s, newActivation(1, "m", "f"), sinksOf(2, "ok"))
	mustRecord(t, s, failed, sinksOf(2, "failed"))           // failed: nothing queued
	mustRecord(t, s, newActivation(3, "m", "f"), nil)        // no sinks
	mustRecord(t, s, newActivation(4, "m", "f"), [][]byte{}) // no sinks either
	mustRecordBatch(t, s, []store.ActivationWithSinks{
		{Activation: newActivation(5, "n", "g"), Sinks: sinksOf(1, "batch")},
		{Activation: failed, Sinks: sinksOf(1, "again")},
	}, 1)
	after := time.Now()

	ds := allPending(t, s)
	equal(t, "queued", deliveryKeys(ds), []string{actID(1) + "/0", actID(1) + "/1", actID(5) + "/0"})
	a1, a5 := newActivation(1, "m", "f"), newActivation(5, "n", "g")
	for i, want := range []store.SinkDelivery{
		{ActivationID: a1.ID, SinkIndex: 0, Sink: sinksOf(2, "ok")[0], Module: "m", Function: "f", Output: a1.Output, Started: a1.Started},
		{ActivationID: a1.ID, SinkIndex: 1, Sink: sinksOf(2, "ok")[1], Module: "m", Function: "f", Output: a1.Output, Started: a1.Started},
		{ActivationID: a5.ID, SinkIndex: 0, Sink: sinksOf(1, "batch")[0], Module: "n", Function: "g", Output: a5.Output, Started: a5.Started},
	} {
		wantTime(t, "NextAttempt of a new delivery", ds[i].NextAttempt, before, after)
		rec, err := s.GetActivation(ctx, ds[i].ActivationID)
		noErr(t, "GetActivation", err)
		if !ds[i].NextAttempt.Equal(rec.Recorded) {
			t.Fatalf("NextAttempt %v of a new delivery, want its activation's Recorded %v", ds[i].NextAttempt, rec.Recorded)
		}
		want.NextAttempt = ds[i].NextAttempt
		equal(t, fmt.Sprintf("delivery %d", i), ds[i], want)
	}
}

// testDeliveryCopiesSink: a queued delivery keeps the sink it was queued
// with, whatever happens to the function or to the caller's bytes after.
func testDeliveryCopiesSink(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustCreateModule(t, s, "m")
	code, _ := Code("sinks")
	fn := newFunction("m", "f", code)
	fn.Spec.Sinks = []fnspec.Sink{{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://old/db"}}}
	_, err := s.CreateFunction(ctx, fn, code)
	noErr(t, "CreateFunction", err)
	sink := []byte(`{"type":"couchdb","params":{"url":"http://old/db"}}`)
	sinks := [][]byte{sink}
	mustRecord(t, s, newActivation(1, "m", "f"), sinks)
	batchSink := slices.Clone(sink)
	mustRecordBatch(t, s, []store.ActivationWithSinks{{Activation: newActivation(2, "m", "f"), Sinks: [][]byte{batchSink}}}, 1)

	copy(sink, `{"type":"XXXXXXX"`)
	copy(batchSink, `{"type":"XXXXXXX"`)
	sinks[0] = []byte(`{}`)
	fn.Spec.Sinks = []fnspec.Sink{{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://new/db"}}}
	_, err = s.UpdateFunction(ctx, fn, code)
	noErr(t, "UpdateFunction", err)

	for _, d := range allPending(t, s) {
		equal(t, "sink of "+d.ActivationID, string(d.Sink), `{"type":"couchdb","params":{"url":"http://old/db"}}`)
	}
}

func testPendingDeliveries(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	// Recorded newest first, in three calls.
	mustRecord(t, s, newActivation(9, "m", "f"), sinksOf(2, "s"))
	mustRecordBatch(t, s, []store.ActivationWithSinks{
		{Activation: newActivation(7, "m", "f"), Sinks: sinksOf(1, "s")},
		{Activation: newActivation(5, "n", "g"), Sinks: sinksOf(3, "s")},
	}, 2)
	mustRecord(t, s, newActivation(3, "m", "f"), sinksOf(1, "s"))
	all := allPending(t, s)
	equal(t, "pending, oldest activation first", deliveryKeys(all), []string{
		actID(3) + "/0", actID(5) + "/0", actID(5) + "/1", actID(5) + "/2", actID(7) + "/0", actID(9) + "/0", actID(9) + "/1"})

	var recorded time.Time // the latest Recorded
	for _, d := range all {
		if d.NextAttempt.After(recorded) {
			recorded = d.NextAttempt
		}
	}
	ds, err := s.PendingDeliveries(ctx, recorded.Add(-time.Hour), 0)
	noErr(t, "PendingDeliveries before anything is due", err)
	equal(t, "pending before anything is due", ds, []store.SinkDelivery{})
	ds, err = s.PendingDeliveries(ctx, recorded, 0)
	noErr(t, "PendingDeliveries at the latest Recorded", err)
	equal(t, "pending at the latest Recorded (inclusive)", ds, all)
	ds, err = s.PendingDeliveries(ctx, recorded.Add(time.Hour), 3)
	noErr(t, "PendingDeliveries with a limit", err)
	equal(t, "pending with a limit", ds, all[:3])

	// Backing off: failed deliveries wait for their next attempt, then come
	// back in activation order.
	t0 := recorded.Add(time.Minute)
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(5), 1, "down", t0.Add(10*time.Second)))
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(3), 0, "down", t0.Add(20*time.Second)))
	for _, tt := range []struct {
		at   time.Time
		want []string
	}{
		{t0, []string{actID(5) + "/0", actID(5) + "/2", actID(7) + "/0", actID(9) + "/0", actID(9) + "/1"}},
		{t0.Add(10 * time.Second), []string{actID(5) + "/0", actID(5) + "/1", actID(5) + "/2", actID(7) + "/0", actID(9) + "/0", actID(9) + "/1"}},
		{t0.Add(20 * time.Second), deliveryKeys(all)},
	} {
		ds, err := s.PendingDeliveries(ctx, tt.at, 0)
		noErr(t, "PendingDeliveries", err)
		equal(t, fmt.Sprintf("pending at t0+%s", tt.at.Sub(t0)), deliveryKeys(ds), tt.want)
	}
}

func testDeliveryTransitions(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	mustRecord(t, s, newActivation(1, "m", "f"), sinksOf(2, "s"))
	mustRecord(t, s, newActivation(2, "m", "f"), sinksOf(1, "s"))
	mustRecord(t, s, newActivation(3, "n", "f"), sinksOf(1, "s"))
	failures := func(module, function string) []store.SinkDelivery {
		t.Helper()
		ds, err := s.SinkFailures(ctx, module, function)
		noErr(t, "SinkFailures", err)
		return ds
	}
	equal(t, "failures before any attempt", failures("m", "f"), []store.SinkDelivery{})

	next := time.Date(2040, 1, 1, 0, 0, 0, 999, time.FixedZone("Z", 3600))
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(2), 0, "connection refused", next))
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(1), 1, "first", next))
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(1), 1, "second", next.Add(time.Minute)))
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(3), 0, "other function", next))
	got := failures("m", "f")
	equal(t, "failures of m/f", deliveryKeys(got), []string{actID(1) + "/1", actID(2) + "/0"})
	a1 := newActivation(1, "m", "f")
	equal(t, "failure after two attempts", got[0], store.SinkDelivery{ActivationID: a1.ID, SinkIndex: 1,
		Sink: sinksOf(2, "s")[1], Module: "m", Function: "f", Output: a1.Output, Started: a1.Started,
		Attempts: 2, LastError: "second", NextAttempt: next.Add(time.Minute).UTC().Truncate(time.Microsecond)})
	if got[1].Attempts != 1 || got[1].LastError != "connection refused" {
		t.Fatalf("failure after one attempt: %+v", got[1])
	}
	equal(t, "failures of n/f", deliveryKeys(failures("n", "f")), []string{actID(3) + "/0"})
	equal(t, "failures of m (no function)", failures("m", ""), []store.SinkDelivery{})
	equal(t, "failures of an unknown function", failures("x", "y"), []store.SinkDelivery{})

	noErr(t, "DeliveryDone of a failed delivery", s.DeliveryDone(ctx, actID(1), 1))
	noErr(t, "DeliveryDone", s.DeliveryDone(ctx, actID(1), 0))
	equal(t, "failures after delivery", deliveryKeys(failures("m", "f")), []string{actID(2) + "/0"})
	equal(t, "pending after delivery", deliveryKeys(allPending(t, s)), []string{actID(2) + "/0", actID(3) + "/0"})

	for _, tt := range []struct {
		name  string
		id    string
		index int
	}{
		{"delivered", actID(1), 0},
		{"unknown activation", actID(99), 0},
		{"unknown sink", actID(2), 1},
		{"negative sink", actID(2), -1},
		{"huge sink", actID(2), 1 << 40},
		{"empty id", "", 0},
	} {
		wantErr(t, "DeliveryDone "+tt.name, s.DeliveryDone(ctx, tt.id, tt.index), store.ErrNotFound)
		wantErr(t, "DeliveryFailed "+tt.name, s.DeliveryFailed(ctx, tt.id, tt.index, "x", next), store.ErrNotFound)
	}
	equal(t, "pending after refused transitions", deliveryKeys(allPending(t, s)), []string{actID(2) + "/0", actID(3) + "/0"})
	if _, err := s.GetActivation(ctx, actID(1)); err != nil {
		t.Fatalf("GetActivation after its deliveries were done: %v", err)
	}
}

// testConcurrentRecord: 16 goroutines record overlapping batches (as
// several outbox drains replaying the same entries would); every id is
// recorded once and queued once per sink.
func testConcurrentRecord(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	const (
		workers = 16
		nIDs    = 1200
		batch   = 150
		sinks   = 2
	)
	var created atomic.Int64
	errs := make([]error, workers)
	parallel(workers, func(w int) {
		// Worker w covers [w*60, w*60+300) in two overlapping batches,
		// forwards or backwards, each id with an odd one sinkless.
		start := w * (nIDs - 300) / (workers - 1)
		for _, lo := range []int{start, start + batch} {
			var as []store.ActivationWithSinks
			for i := lo; i < lo+batch; i++ {
				a := store.ActivationWithSinks{Activation: newActivation(i, "m", fmt.Sprint("f", i%4)), Sinks: sinksOf(sinks, "c")}
				if i%2 == 1 {
					a.Sinks = nil
				}
				as = append(as, a)
			}
			if w%2 == 1 {
				slices.Reverse(as)
			}
			n, err := s.RecordActivations(ctx, as)
			if err != nil {
				errs[w] = err
				return
			}
			created.Add(int64(n))
		}
	})
	for w, err := range errs {
		noErr(t, fmt.Sprintf("worker %d", w), err)
	}
	if created.Load() != nIDs {
		t.Fatalf("created %d in all, want %d", created.Load(), nIDs)
	}
	var got []string
	f := store.ActivationFilter{Limit: store.MaxActivationLimit}
	for {
		page, err := s.ListActivations(ctx, f)
		noErr(t, "ListActivations", err)
		if len(page) == 0 {
			break
		}
		got = append(got, ids(page)...)
		f.After = page[len(page)-1].ID
	}
	want := []string{}
	for i := range nIDs {
		want = append(want, actID(i))
	}
	equal(t, "recorded ids", got, want)

	var keys []string
	for {
		ds, err := s.PendingDeliveries(ctx, time.Now().Add(time.Hour), store.MaxActivationLimit)
		noErr(t, "PendingDeliveries", err)
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			noErr(t, "DeliveryDone", s.DeliveryDone(ctx, d.ActivationID, d.SinkIndex))
		}
		keys = append(keys, deliveryKeys(ds)...)
	}
	var wantKeys []string
	for i := 0; i < nIDs; i += 2 {
		for j := range sinks {
			wantKeys = append(wantKeys, fmt.Sprintf("%s/%d", actID(i), j))
		}
	}
	equal(t, "deliveries, each once", keys, wantKeys)
}

func testActivationsReopen(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	var batch []store.ActivationWithSinks
	for i := range 20 {
		batch = append(batch, store.ActivationWithSinks{Activation: newActivation(i, "m", fmt.Sprint("f", i%3)), Sinks: sinksOf(i%3, "r")})
	}
	mustRecordBatch(t, s, batch, 20)
	noErr(t, "DeliveryDone", s.DeliveryDone(ctx, actID(1), 0))
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(2), 1, "down", time.Now().Add(time.Minute)))
	type state struct {
		Activations []store.Activation
		Pending     []store.SinkDelivery
		Failures    []store.SinkDelivery
	}
	take := func(s store.Store) state {
		t.Helper()
		var st state
		var err error
		st.Activations, err = s.ListActivations(ctx, store.ActivationFilter{})
		noErr(t, "ListActivations", err)
		st.Pending = allPending(t, s)
		st.Failures, err = s.SinkFailures(ctx, "m", "f2")
		noErr(t, "SinkFailures", err)
		return st
	}
	want := take(s)
	if len(want.Activations) != 20 || len(want.Failures) != 1 {
		t.Fatalf("before close: %d activations, %d failures", len(want.Activations), len(want.Failures))
	}
	noErr(t, "Close", s.Close())
	s = reopen(t)
	equal(t, "state after reopen", take(s), want)
	// Still dropping replays, still recording.
	mustRecordBatch(t, s, append(batch, store.ActivationWithSinks{Activation: newActivation(20, "m", "f0"), Sinks: sinksOf(1, "r")}), 1)
	noErr(t, "DeliveryDone after reopen", s.DeliveryDone(ctx, actID(2), 1))
}
