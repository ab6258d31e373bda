package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// The contract of bounded activation records: the truncated flag, the
// whole output kept for sinks, the three prune calls and the volume.

// recordRange records activations from..to-1 of module/function in one
// batch; those in held get one sink each, so a queued delivery holds them.
func recordRange(t *testing.T, s store.Store, from, to int, fn func(i int) (module, function string), held ...int) {
	t.Helper()
	var batch []store.ActivationWithSinks
	for i := from; i < to; i++ {
		module, function := fn(i)
		a := store.ActivationWithSinks{Activation: newActivation(i, module, function)}
		if slices.Contains(held, i) {
			a.Sinks = sinksOf(1, "held")
		}
		batch = append(batch, a)
	}
	mustRecordBatch(t, s, batch, to-from)
}

func oneFunction(int) (string, string) { return "m", "f" }

// activationIDs returns the ids of every stored activation, ascending.
func activationIDs(t *testing.T, s store.Store) []string {
	t.Helper()
	var all []string
	f := store.ActivationFilter{Limit: store.MaxActivationLimit}
	for {
		page, err := s.ListActivations(t.Context(), f)
		noErr(t, "ListActivations", err)
		if len(page) == 0 {
			return all
		}
		all = append(all, ids(page)...)
		f.After = page[len(page)-1].ID
	}
}

// actIDs returns actID(i) of each i.
func actIDs(is ...int) []string {
	out := []string{}
	for _, i := range is {
		out = append(out, actID(i))
	}
	return out
}

// wantDeliveriesRead checks that every queued delivery is there and reads
// its activation, after a prune.
func wantDeliveriesRead(t *testing.T, s store.Store, want []string) {
	t.Helper()
	ds := allPending(t, s)
	equal(t, "queued deliveries", deliveryKeys(ds), want)
	for _, d := range ds {
		a, err := s.GetActivation(t.Context(), d.ActivationID)
		noErr(t, "GetActivation of a queued delivery's activation", err)
		if d.Module != a.Module || d.Function != a.Function || !d.Started.Equal(a.Started) {
			t.Fatalf("delivery %s/%d reads %s/%s %v, its activation is %s/%s %v",
				d.ActivationID, d.SinkIndex, d.Module, d.Function, d.Started, a.Module, a.Function, a.Started)
		}
	}
}

// pruneAll calls prune with limit until it removes fewer than limit,
// checking that no call removes more, and returns the total.
func pruneAll(t *testing.T, what string, limit int, prune func(limit int) (int, error)) int {
	t.Helper()
	total := 0
	for {
		n, err := prune(limit)
		noErr(t, what, err)
		if n > limit {
			t.Fatalf("%s with limit %d removed %d", what, limit, n)
		}
		total += n
		if n < limit {
			return total
		}
	}
}

// testActivationTruncated: the truncated flag is kept, and the deliveries
// of a truncated activation carry the whole output, in a batch as alone,
// across a reopen.
func testActivationTruncated(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	whole := []byte(`{"big":"` + string(bytes.Repeat([]byte("x"), 100_000)) + `"}`)
	cut := newActivation(1, "m", "f")
	cut.Output, cut.Message, cut.Truncated = slices.Clone(whole[:1000]), "", true
	mustRecord(t, s, cut, nil) // RecordActivation has no SinkOutput: no sinks
	failed := newActivation(2, "m", "f")
	failed.Code, failed.Output, failed.Message, failed.Truncated = 9, nil, "long message, cut", true
	mustRecordBatch(t, s, []store.ActivationWithSinks{
		{Activation: failed},
		{Activation: func() store.Activation { a := cut; a.ID = actID(3); return a }(), Sinks: sinksOf(2, "t"), SinkOutput: whole},
		{Activation: newActivation(4, "m", "f"), Sinks: sinksOf(1, "w")}, // whole: no SinkOutput
	}, 3)

	check := func(s store.Store, when string) {
		t.Helper()
		for _, tt := range []struct {
			id        string
			truncated bool
			output    []byte
		}{{actID(1), true, whole[:1000]}, {actID(2), true, nil}, {actID(3), true, whole[:1000]}, {actID(4), false, newActivation(4, "m", "f").Output}} {
			a, err := s.GetActivation(ctx, tt.id)
			noErr(t, "GetActivation", err)
			if a.Truncated != tt.truncated || !bytes.Equal(a.Output, tt.output) {
				t.Fatalf("%s: activation %s: truncated %v, %d bytes of output; want %v, %d bytes",
					when, tt.id, a.Truncated, len(a.Output), tt.truncated, len(tt.output))
			}
		}
		ds := allPending(t, s)
		equal(t, when+": deliveries", deliveryKeys(ds), []string{actID(3) + "/0", actID(3) + "/1", actID(4) + "/0"})
		for _, d := range ds[:2] {
			if !bytes.Equal(d.Output, whole) {
				t.Fatalf("%s: delivery %s/%d of a truncated activation carries %d bytes, want the whole %d",
					when, d.ActivationID, d.SinkIndex, len(d.Output), len(whole))
			}
		}
		equal(t, when+": output of a whole activation's delivery", string(ds[2].Output), string(newActivation(4, "m", "f").Output))
	}
	check(s, "recorded")
	noErr(t, "DeliveryFailed", s.DeliveryFailed(ctx, actID(3), 1, "down", time.Now().Add(-time.Second)))
	failures, err := s.SinkFailures(ctx, "m", "f")
	noErr(t, "SinkFailures", err)
	if len(failures) != 1 || !bytes.Equal(failures[0].Output, whole) {
		t.Fatalf("SinkFailures of a truncated activation: %d failures, want 1 with the whole output", len(failures))
	}
	noErr(t, "Close", s.Close())
	check(reopen(t), "reopened")
}

func testPruneBefore(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	n, err := s.PruneActivationsBefore(ctx, actID(5), 10)
	noErr(t, "PruneActivationsBefore of an empty store", err)
	equal(t, "removed from an empty store", n, 0)
	recordRange(t, s, 0, 10, func(i int) (string, string) { return "m", fmt.Sprint("f", i%3) }, 2, 6)

	n, err = s.PruneActivationsBefore(ctx, actID(5), 2)
	noErr(t, "PruneActivationsBefore", err)
	equal(t, "removed with limit 2", n, 2)
	equal(t, "left after the first call (oldest first)", activationIDs(t, s), actIDs(2, 3, 4, 5, 6, 7, 8, 9))
	equal(t, "removed by the next calls", pruneAll(t, "PruneActivationsBefore", 2, func(limit int) (int, error) {
		return s.PruneActivationsBefore(ctx, actID(5), limit)
	}), 2)
	equal(t, "left: the held one and those not before the id", activationIDs(t, s), actIDs(2, 5, 6, 7, 8, 9))
	wantDeliveriesRead(t, s, []string{actID(2) + "/0", actID(6) + "/0"})
	for _, f := range []string{"f0", "f1", "f2"} { // the per-function index follows
		got, err := s.ListActivations(ctx, store.ActivationFilter{Module: "m", Function: f})
		noErr(t, "ListActivations", err)
		var want []string
		for _, id := range activationIDs(t, s) {
			for i := range 10 {
				if actID(i) == id && fmt.Sprint("f", i%3) == f {
					want = append(want, id)
				}
			}
		}
		equal(t, "activations of "+f, ids(got), append([]string{}, want...))
	}

	// Once delivered, the held activation goes at the next prune.
	noErr(t, "DeliveryDone", s.DeliveryDone(ctx, actID(2), 0))
	n, err = s.PruneActivationsBefore(ctx, actID(5), 0)
	noErr(t, "PruneActivationsBefore", err)
	equal(t, "removed once delivered", n, 1)
	n, err = s.PruneActivationsBefore(ctx, "", 0)
	noErr(t, "PruneActivationsBefore the empty id", err)
	equal(t, "removed before the empty id", n, 0)
	n, err = s.PruneActivationsBefore(ctx, actID(99), 0)
	noErr(t, "PruneActivationsBefore a later id", err)
	equal(t, "removed before a later id (all but the held)", n, 4)
	equal(t, "left", activationIDs(t, s), actIDs(6))
	wantDeliveriesRead(t, s, []string{actID(6) + "/0"})
}

func testPruneBeyond(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	recordRange(t, s, 0, 10, oneFunction, 1, 8)
	n, err := s.PruneActivationsBeyond(ctx, 10, 0)
	noErr(t, "PruneActivationsBeyond", err)
	equal(t, "removed when keeping all", n, 0)

	// The newest 4 are 6..9; of the older, 1 is held.
	equal(t, "removed beyond 4", pruneAll(t, "PruneActivationsBeyond", 3, func(limit int) (int, error) {
		return s.PruneActivationsBeyond(ctx, 4, limit)
	}), 5)
	equal(t, "left after keeping 4", activationIDs(t, s), actIDs(1, 6, 7, 8, 9))
	wantDeliveriesRead(t, s, []string{actID(1) + "/0", actID(8) + "/0"})

	// Newer ones push the older out. Held ones count when finding the
	// newest 4: 8 is among them no longer, but stays.
	recordRange(t, s, 10, 13, oneFunction)
	n, err = s.PruneActivationsBeyond(ctx, 4, 0)
	noErr(t, "PruneActivationsBeyond", err)
	equal(t, "removed after 3 more", n, 2)
	equal(t, "left", activationIDs(t, s), actIDs(1, 8, 9, 10, 11, 12))
	n, err = s.PruneActivationsBeyond(ctx, -1, 0)
	noErr(t, "PruneActivationsBeyond -1", err)
	equal(t, "removed keeping -1 (as 0)", n, 4)
	equal(t, "left: the held ones", activationIDs(t, s), actIDs(1, 8))
	wantDeliveriesRead(t, s, []string{actID(1) + "/0", actID(8) + "/0"})
}

func testPruneBeyondPerFunction(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	// 0..17 over three functions (one a prefix of another's module) and a
	// function with two activations only; 3 (of "m"/"f") is held.
	fnOf := func(i int) (string, string) {
		switch {
		case i >= 16:
			return "n", "few"
		case i%3 == 0:
			return "m", "f"
		case i%3 == 1:
			return "mm", "f"
		}
		return "m", "g"
	}
	recordRange(t, s, 0, 18, fnOf, 3)
	removed := pruneAll(t, "PruneActivationsBeyondPerFunction", 2, func(limit int) (int, error) {
		return s.PruneActivationsBeyondPerFunction(ctx, 2, limit)
	})
	// m/f: 0 3 6 9 12 15 -> 12 15 and the held 3; mm/f: 1 4 7 10 13 -> 10 13;
	// m/g: 2 5 8 11 14 -> 11 14; n/few: 16 17.
	equal(t, "removed", removed, 9)
	equal(t, "left", activationIDs(t, s), actIDs(3, 10, 11, 12, 13, 14, 15, 16, 17))
	for _, tt := range []struct {
		module, function string
		want             []string
	}{{"m", "f", actIDs(3, 12, 15)}, {"mm", "f", actIDs(10, 13)}, {"m", "g", actIDs(11, 14)}, {"n", "few", actIDs(16, 17)}} {
		got, err := s.ListActivations(ctx, store.ActivationFilter{Module: tt.module, Function: tt.function})
		noErr(t, "ListActivations", err)
		equal(t, "left of "+tt.module+"/"+tt.function, ids(got), tt.want)
	}
	wantDeliveriesRead(t, s, []string{actID(3) + "/0"})

	// Keeping none empties every function but for the held activation.
	n, err := s.PruneActivationsBeyondPerFunction(ctx, 0, 0)
	noErr(t, "PruneActivationsBeyondPerFunction 0", err)
	equal(t, "removed keeping none", n, 8)
	equal(t, "left keeping none", activationIDs(t, s), actIDs(3))
	for _, module := range []string{"m", "mm", "n"} {
		got, err := s.ListActivations(ctx, store.ActivationFilter{Module: module})
		noErr(t, "ListActivations", err)
		if module != "m" {
			equal(t, "activations of emptied module "+module, ids(got), []string{})
		}
	}
	// A function emptied of its activations records again.
	recordRange(t, s, 20, 21, func(int) (string, string) { return "n", "few" })
	got, err := s.ListActivations(ctx, store.ActivationFilter{Module: "n", Function: "few"})
	noErr(t, "ListActivations", err)
	equal(t, "activations of a function recorded again", ids(got), actIDs(20))
}

func testActivationVolume(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	empty, err := s.ActivationVolume(ctx)
	noErr(t, "ActivationVolume", err)
	if empty.Count != 0 || empty.Bytes < 0 {
		t.Fatalf("volume of an empty store: %+v", empty)
	}
	// 40 outputs of 64 KiB that do not compress (Postgres compresses TOAST).
	const n, size = 40, 64 << 10
	var batch []store.ActivationWithSinks
	for i := range n {
		a := newActivation(i, "m", "f")
		a.Output = noise(i, size)
		batch = append(batch, store.ActivationWithSinks{Activation: a})
	}
	mustRecordBatch(t, s, batch, n)
	full, err := s.ActivationVolume(ctx)
	noErr(t, "ActivationVolume", err)
	if full.Count != n || full.Bytes-empty.Bytes < n*size {
		t.Fatalf("volume after %d activations of %d bytes: %+v (empty: %+v)", n, size, full, empty)
	}
	_, err = s.PruneActivationsBeyond(ctx, 10, 0)
	noErr(t, "PruneActivationsBeyond", err)
	pruned, err := s.ActivationVolume(ctx)
	noErr(t, "ActivationVolume", err)
	if pruned.Count != 10 {
		t.Fatalf("volume after keeping 10: %+v", pruned)
	}
}

// noise returns n bytes of printable pseudo-random text (seeded by seed),
// which neither Postgres nor anything else compresses much.
func noise(seed, n int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = alphabet[x&63]
	}
	return b
}
