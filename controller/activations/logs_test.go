package activations

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

func logLines(n int, text string) []store.LogLine {
	out := make([]store.LogLine, n)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range out {
		out[i] = store.LogLine{Time: t0.Add(time.Duration(i) * time.Microsecond), Stream: "console", Text: text}
	}
	return out
}

func logText(lines []store.LogLine) (n int) {
	for _, l := range lines {
		n += len(l.Text)
	}
	return n
}

func TestBoundLogs(t *testing.T) {
	agentMarker := store.LogLine{Stream: "wisp", Text: "log truncated: 5 more lines and 50 bytes dropped (bound: 3 lines, 30 bytes per activation)"}
	for _, tt := range []struct {
		name      string
		in        []store.LogLine
		wantTexts []string // before the controller's marker
		wantCut   bool
	}{
		{"nil", nil, nil, false},
		{"within", logLines(3, "0123456789"), []string{"0123456789", "0123456789", "0123456789"}, false},
		{"agent marker not counted", append(logLines(3, "0123456789"), agentMarker),
			[]string{"0123456789", "0123456789", "0123456789", agentMarker.Text}, false},
		{"too many lines", logLines(5, "x"), []string{"x", "x", "x"}, true},
		{"too many lines, agent marker kept", append(logLines(5, "x"), agentMarker), []string{"x", "x", "x", agentMarker.Text}, true},
		{"too many bytes: cut at UTF-8", logLines(2, "0123456789€€€€€€"), []string{"0123456789€€€€€€", "01"}, true},
		{"too many bytes: no rune split", []store.LogLine{{Text: strings.Repeat("x", 28)}, {Text: "€€"}}, []string{strings.Repeat("x", 28)}, true},
		{"one giant line", logLines(1, strings.Repeat("é", 100)), []string{strings.Repeat("é", 15)}, true},
		{"a long last wisp line is counted", []store.LogLine{{Stream: "wisp", Text: strings.Repeat("w", MaxMarkerBytes+1)}},
			[]string{strings.Repeat("w", 30)}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := boundLogs(tt.in, 3, 30)
			if cut != tt.wantCut {
				t.Fatalf("cut %v, want %v", cut, tt.wantCut)
			}
			if !cut {
				if len(got) != len(tt.in) || (len(got) > 0 && &got[0] != &tt.in[0]) {
					t.Errorf("a log within the bound was copied or changed")
				}
				return
			}
			if n := len(got); n != len(tt.wantTexts)+1 || got[n-1].Stream != "wisp" || !strings.HasPrefix(got[n-1].Text, "log truncated by the controller") {
				t.Fatalf("lines %+v, want %q and the controller's marker", got, tt.wantTexts)
			}
			for i, w := range tt.wantTexts {
				if got[i].Text != w || !utf8.ValidString(got[i].Text) {
					t.Errorf("line %d %q, want %q", i, got[i].Text, w)
				}
			}
		})
	}
}

// TestBoundHostileLogs: an agent sends far more log than any agent keeps
// (many lines, huge ones, unknown streams, absurd times). The record keeps
// the bound, copies what it keeps (the whole log is not held in memory
// while the record waits in the queue), and is marked truncated.
func TestBoundHostileLogs(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := New(Config{Store: &countingStore{}, Bounds: Bounds{LogLines: 100, LogBytes: 64 << 10}, Metrics: NewMetrics(reg)})
	huge := strings.Repeat("A", 1<<20)
	wire := make([]protocol.LogLine, 0, 200_002)
	wire = append(wire, protocol.LogLine{UnixUS: math.MaxUint64, Stream: 200, Text: "\xff\xfe not UTF-8"})
	for range 200_000 {
		wire = append(wire, protocol.LogLine{UnixUS: 1, Stream: protocol.StreamStderr, Text: huge[:1000]})
	}
	wire = append(wire, protocol.LogLine{Stream: protocol.StreamConsole, Text: huge})
	got := r.bound(store.Activation{ID: "x", Logs: WireLogs(wire)}, nil)
	if !got.Truncated {
		t.Error("record not marked truncated")
	}
	n := len(got.Logs)
	if n > 100+1 || logText(got.Logs[:n-1]) > 64<<10 {
		t.Errorf("kept %d lines, %d bytes: over the bound", n, logText(got.Logs))
	}
	if got.Logs[0].Stream != "stream200" || got.Logs[0].Time.Year() != 9999 {
		t.Errorf("first line %+v, want stream200 and a time clamped to the year 9999", got.Logs[0])
	}
	for _, l := range got.Logs[1 : n-1] {
		if unsafe.StringData(l.Text) == unsafe.StringData(huge) {
			t.Fatal("a kept line shares the agent's text: the whole log stays in memory")
		}
	}
	if c := testutil.ToFloat64(r.metrics.truncatedTotal.WithLabelValues(fieldLogs)); c != 1 {
		t.Errorf("truncated logs counted %v, want 1", c)
	}
}

func TestWireLogs(t *testing.T) {
	if WireLogs(nil) != nil || WireLogs([]protocol.LogLine{}) != nil {
		t.Error("no lines must stay nil")
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC)
	got := WireLogs([]protocol.LogLine{
		{UnixUS: uint64(at.UnixMicro()), Stream: protocol.StreamConsole, Text: "a"},
		{Stream: protocol.StreamStderr, Text: "b"}, // a version 1–2 agent: no time
		{UnixUS: uint64(at.UnixMicro()), Stream: protocol.StreamPlatform, Text: "c"},
	})
	want := []store.LogLine{{Time: at, Stream: "console", Text: "a"}, {Stream: "stderr", Text: "b"}, {Time: at, Stream: "wisp", Text: "c"}}
	for i := range want {
		if !got[i].Time.Equal(want[i].Time) || got[i].Time.IsZero() != want[i].Time.IsZero() || got[i].Stream != want[i].Stream || got[i].Text != want[i].Text {
			t.Errorf("line %d %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestEveryPathBoundsLogs records a hostile log through the recorder's
// dispatched and outbox paths into each real store: what is stored is
// bounded, in order, with its streams and times, and ends with the marker.
func TestEveryPathBoundsLogs(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			ctx := t.Context()
			r := New(Config{Store: s, Bounds: Bounds{LogLines: 10, LogBytes: 100}})
			runCtx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(runCtx) }()

			at := time.Now().UTC().Truncate(time.Microsecond)
			wire := make([]protocol.LogLine, 1000)
			for i := range wire {
				wire[i] = protocol.LogLine{UnixUS: uint64(at.UnixMicro()) + uint64(i), Stream: protocol.LogStream(i % 2), Text: "line " + strings.Repeat("é", i%7)}
			}
			dispatched, replayed := activationid.New(time.Now()), activationid.New(time.Now())
			if err := r.Dispatched(ctx, store.Activation{ID: dispatched, Module: "_", Function: "f", Started: at, Logs: WireLogs(wire)}, nil, true); err != nil {
				t.Fatal(err)
			}
			if err := r.Outbox(ctx, "ag_1", []protocol.OutboxEntry{{ActivationID: replayed, Module: "_", Function: "f",
				StartedUnixUS: uint64(at.UnixMicro()), Logs: wire}}); err != nil {
				t.Fatal(err)
			}
			stop()
			<-done
			for _, id := range []string{dispatched, replayed} {
				got, err := s.GetActivation(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				n := len(got.Logs)
				if !got.Truncated || n < 2 || n > 11 || logText(got.Logs[:n-1]) > 100 || got.Logs[n-1].Stream != "wisp" {
					t.Fatalf("%s: truncated %v, %d lines %+v; want at most 10 lines, 100 bytes and the marker", id, got.Truncated, n, got.Logs)
				}
				for i, l := range got.Logs[:n-1] {
					want := WireLogs(wire[i : i+1])[0]
					if l.Stream != want.Stream || !l.Time.Equal(want.Time) || !strings.HasPrefix(want.Text, l.Text) || !utf8.ValidString(l.Text) {
						t.Errorf("%s: line %d %+v, want (a UTF-8 prefix of) %+v", id, i, l, want)
					}
				}
			}
		})
	}
}
