package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// The contract of an activation's log lines: kept with their activation,
// in order, with their stream and time (UTC, to the microsecond; the zero
// time stays zero), texts as given byte for byte; no lines read back nil.

func testActivationLogs(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	at := time.Date(2031, 2, 3, 4, 5, 6, 789123456, time.FixedZone("Y", -7200))
	many := make([]store.LogLine, 500)
	for i := range many {
		many[i] = store.LogLine{Time: at.Add(time.Duration(i) * 1500 * time.Microsecond), Stream: []string{"console", "stderr"}[i%2],
			Text: fmt.Sprintf("line %03d", i)}
	}
	tests := []struct {
		name string
		logs []store.LogLine
	}{
		{"nil", nil},
		{"empty", []store.LogLine{}},
		{"one", []store.LogLine{{Time: at, Stream: "console", Text: "hello"}}},
		{"many, in order", many},
		{"streams", []store.LogLine{
			{Time: at, Stream: "console", Text: "c"}, {Time: at, Stream: "stderr", Text: "e"},
			{Time: at, Stream: "wisp", Text: "log truncated: 3 more lines and 9 bytes dropped"}, {Time: at, Stream: "stream7", Text: "?"},
		}},
		{"unicode and bytes", []store.LogLine{
			{Time: at, Stream: "console", Text: "héllo wörld ✓ 日本語 🚀"},
			{Time: at, Stream: "console", Text: "nul \x00 byte and \xff\xfe not UTF-8"},
			{Time: at, Stream: "console", Text: ""},
			{Time: at, Stream: "console", Text: strings.Repeat("é", 10_000)},
		}},
		{"times: zero, backwards, far", []store.LogLine{
			{Stream: "console", Text: "no time"},
			{Time: at, Stream: "console", Text: "later"},
			{Time: at.Add(-time.Hour), Stream: "console", Text: "earlier"},
			{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), Stream: "console", Text: "far"},
			{Time: time.Unix(0, 0), Stream: "console", Text: "epoch"},
		}},
	}
	want := func(logs []store.LogLine) []store.LogLine {
		if len(logs) == 0 {
			return nil
		}
		out := make([]store.LogLine, len(logs))
		for i, l := range logs {
			out[i] = l
			if !l.Time.IsZero() {
				out[i].Time = l.Time.UTC().Truncate(time.Microsecond)
			}
		}
		return out
	}
	var batch []store.ActivationWithSinks
	for i, tt := range tests {
		a := newActivation(i, "m", "f")
		a.Logs = tt.logs
		mustRecord(t, s, a, nil)
		b := newActivation(100+i, "m", "f") // the batch path
		b.Logs = tt.logs
		batch = append(batch, store.ActivationWithSinks{Activation: b, Sinks: sinksOf(1, "l")})
	}
	mustRecordBatch(t, s, batch, len(batch))
	check := func(s store.Store, when string) {
		t.Helper()
		listed, err := s.ListActivations(ctx, store.ActivationFilter{Module: "m", Limit: store.MaxActivationLimit})
		noErr(t, "ListActivations", err)
		byID := map[string]store.Activation{}
		for _, a := range listed {
			byID[a.ID] = a
		}
		for i, tt := range tests {
			for _, id := range []string{actID(i), actID(100 + i)} {
				got, err := s.GetActivation(ctx, id)
				noErr(t, "GetActivation", err)
				equal(t, fmt.Sprintf("%s: %s: GetActivation(%s).Logs", when, tt.name, id), got.Logs, want(tt.logs))
				equal(t, fmt.Sprintf("%s: %s: ListActivations, %s's Logs", when, tt.name, id), byID[id].Logs, want(tt.logs))
			}
		}
	}
	check(s, "recorded")
	noErr(t, "Close", s.Close())
	check(reopen(t), "reopened")
}

// testActivationLogsPruned: logs take room in the store with their
// activation, and leave with it.
func testActivationLogsPruned(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	empty, err := s.ActivationVolume(ctx)
	noErr(t, "ActivationVolume", err)
	// 40 activations with 64 KiB of log each (in 100 lines that do not
	// compress) and no output.
	const n, lines, lineSize = 40, 100, 655
	var batch []store.ActivationWithSinks
	for i := range n {
		a := newActivation(i, "m", "f")
		a.Output = nil
		text := noise(i, lines*lineSize)
		for j := range lines {
			a.Logs = append(a.Logs, store.LogLine{Time: a.Started, Stream: "console", Text: string(text[j*lineSize : (j+1)*lineSize])})
		}
		batch = append(batch, store.ActivationWithSinks{Activation: a})
	}
	mustRecordBatch(t, s, batch, n)
	full, err := s.ActivationVolume(ctx)
	noErr(t, "ActivationVolume", err)
	if full.Count != n || full.Bytes-empty.Bytes < n*lines*lineSize {
		t.Fatalf("volume after %d activations with %d bytes of log: %+v (empty: %+v)", n, lines*lineSize, full, empty)
	}
	removed, err := s.PruneActivationsBefore(ctx, actID(n), 0)
	noErr(t, "PruneActivationsBefore", err)
	if removed != n {
		t.Fatalf("pruned %d, want %d", removed, n)
	}
	for _, id := range []string{actID(0), actID(n - 1)} {
		_, err := s.GetActivation(ctx, id)
		wantErr(t, "GetActivation of a pruned activation", err, store.ErrNotFound)
	}
	pruned, err := s.ActivationVolume(ctx)
	noErr(t, "ActivationVolume", err)
	if pruned.Count != 0 {
		t.Fatalf("volume after pruning all: %+v", pruned)
	}
	t.Logf("activation volume: empty %d bytes, with %d logs of %d bytes %d, pruned %d (Postgres gives the room back at VACUUM)",
		empty.Bytes, n, lines*lineSize, full.Bytes, pruned.Bytes)
}
