package runtime

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wispfn/wisp/protocol"
)

func texts(lines []protocol.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

// checkTimes checks that every line was captured within [from, to] and
// that times never go back.
func checkTimes(t *testing.T, lines []protocol.LogLine, from, to time.Time) {
	t.Helper()
	var prev uint64
	for i, l := range lines {
		if l.UnixUS < uint64(from.UnixMicro()) || l.UnixUS > uint64(to.UnixMicro()) {
			t.Errorf("line %d captured at %d µs, outside the invocation [%d, %d]", i, l.UnixUS, from.UnixMicro(), to.UnixMicro())
		}
		if l.UnixUS < prev {
			t.Errorf("line %d captured at %d µs, before line %d (%d µs)", i, l.UnixUS, i-1, prev)
		}
		prev = l.UnixUS
	}
}

func TestLogStderrStream(t *testing.T) {
	r := newRuntime(t, Config{})
	d := load(t, r, "stdio_log")
	from := time.Now()
	res, err := r.Invoke(context.Background(), d, Request{})
	to := time.Now()
	if err != nil || string(res.Output) != `{}` {
		t.Fatalf("Invoke: %s %v", res.Output, err)
	}
	want := []string{"err one", "err two", "err three"} // split across writes, "\r\n", no final newline
	if got := texts(res.Logs); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("logs %q, want %q", got, want)
	}
	for _, l := range res.Logs {
		if l.Stream != protocol.StreamStderr {
			t.Errorf("line %q on stream %v, want stderr", l.Text, l.Stream)
		}
	}
	checkTimes(t, res.Logs, from, to)
	if res.LogsDropped != 0 || res.LogBytesDropped != 0 {
		t.Errorf("dropped %d lines %d bytes of a small log", res.LogsDropped, res.LogBytesDropped)
	}
}

func TestLogConsoleTimes(t *testing.T) {
	r := newRuntime(t, Config{})
	d := load(t, r, "log")
	from := time.Now()
	res, err := r.Invoke(context.Background(), d, Request{})
	to := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Logs) != 2 || res.Logs[0].Stream != protocol.StreamConsole || res.Logs[1].Stream != protocol.StreamConsole {
		t.Fatalf("logs %+v, want two console lines", res.Logs)
	}
	checkTimes(t, res.Logs, from, to)
}

// TestLogFlood is the hostile guest: stdioflood writes 100,000 times more
// log than the bound, as one huge console line, a 64 MiB stdio line without
// a newline and 200,000 tiny lines. The host keeps at most the bound (and
// the marker), in order, and allocates nowhere near what the guest wrote.
func TestLogFlood(t *testing.T) {
	const (
		giantConsole = 60000
		giantStdio   = 2048 * 32768
		tiny         = 200000
	)
	tests := []struct {
		name         string
		limits       Limits
		want         []string // texts, "a×N" for N 'a's; the marker is checked apart
		droppedLines int
	}{
		{
			// The console line is cut at the byte bound; nothing else fits.
			name:         "bytes",
			limits:       Limits{LogLines: 10, LogBytes: 1000},
			want:         []string{"first", "a×995"},
			droppedLines: 1 + tiny + 1, // the stdio line (nothing of it fit), the tiny ones, "last"
		},
		{
			// The stdio line is cut at the byte bound, the rest dropped.
			name:         "stdio cut",
			limits:       Limits{LogLines: 10, LogBytes: 100000},
			want:         []string{"first", "a×60000", "a×39995"},
			droppedLines: tiny + 1,
		},
		{
			// The line bound: nothing of the stdio line is held once it
			// is reached.
			name:         "lines",
			limits:       Limits{LogLines: 2, LogBytes: 1 << 20},
			want:         []string{"first", "a×60000"},
			droppedLines: 1 + tiny + 1,
		},
	}
	r := newRuntime(t, Config{Limits: Limits{Timeout: time.Minute}})
	d := load(t, r, "stdioflood")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			from := time.Now()
			res, err := r.Invoke(context.Background(), d, Request{Limits: tt.limits})
			to := time.Now()
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Logs) != len(tt.want)+1 {
				t.Fatalf("%d lines, want %d and the marker", len(res.Logs), len(tt.want))
			}
			kept := 0
			for i, w := range tt.want {
				l := res.Logs[i]
				got := l.Text
				if strings.Trim(got, "a") == "" && len(got) > 1 {
					got = "a×" + strconv.Itoa(len(got))
				}
				if got != w {
					t.Errorf("line %d is %q, want %q", i, got, w)
				}
				kept += len(l.Text)
			}
			if kept > tt.limits.LogBytes || len(res.Logs)-1 > tt.limits.LogLines {
				t.Errorf("kept %d lines, %d bytes: over the bound %+v", len(res.Logs)-1, kept, tt.limits)
			}
			written := 5 + giantConsole + giantStdio + tiny + 4 // texts, without line endings
			if res.LogsDropped != tt.droppedLines || res.LogBytesDropped != written-kept {
				t.Errorf("dropped %d lines, %d bytes; want %d, %d", res.LogsDropped, res.LogBytesDropped, tt.droppedLines, written-kept)
			}
			marker := res.Logs[len(res.Logs)-1]
			if marker.Stream != protocol.StreamPlatform ||
				marker.Text != TruncatedMarker(tt.droppedLines, written-kept, tt.limits.LogLines, tt.limits.LogBytes) {
				t.Errorf("last line %+v, want the truncation marker", marker)
			}
			checkTimes(t, res.Logs, from, to)
			// The guest wrote 64 MiB of log; buffering it would show here.
			// (The instance's linear memory, 64 KiB, comes from a pool.)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("the invocation allocated %d MiB for a log bound of %d bytes", grew>>20, tt.limits.LogBytes)
			}
		})
	}
}

func TestLogBufferUTF8Cut(t *testing.T) {
	tests := []struct {
		name  string
		write func(l *logBuffer)
		want  string
	}{
		{"console line", func(l *logBuffer) { l.add(protocol.StreamConsole, []byte("ab€€"), time.Now()) }, "ab€"},
		{"stdio line", func(l *logBuffer) { l.write(1, protocol.StreamConsole, []byte("ab€€\n")) }, "ab€"},
		{"stdio partial line", func(l *logBuffer) {
			l.write(1, protocol.StreamConsole, []byte("ab€"))
			l.write(1, protocol.StreamConsole, []byte("€€"))
			l.finish([2]protocol.LogStream{})
		}, "ab€"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := logBuffer{maxLines: 10, maxBytes: 7} // "ab€" is 5 bytes, "ab€€" 8
			tt.write(&l)
			if len(l.lines) == 0 || l.lines[0].Text != tt.want || !utf8.ValidString(l.lines[0].Text) {
				t.Fatalf("lines %+v, want %q first", l.lines, tt.want)
			}
		})
	}
}

func TestLogBufferNoMarkerWithinBound(t *testing.T) {
	l := logBuffer{maxLines: 3, maxBytes: 9}
	l.write(2, protocol.StreamStderr, []byte("abc\n\n\r\ndef\nghi"))
	l.finish([2]protocol.LogStream{protocol.StreamConsole, protocol.StreamStderr})
	if got := strings.Join(texts(l.lines), "|"); got != "abc|def|ghi" || l.droppedLines != 0 || l.droppedBytes != 0 {
		t.Fatalf("lines %q, dropped %d/%d; want abc|def|ghi (empty lines skipped) and no marker", got, l.droppedLines, l.droppedBytes)
	}
}

// TestLogBufferAllocs keeps the warm path cheap: three whole lines cost
// their three strings and one slice, nothing per line besides.
func TestLogBufferAllocs(t *testing.T) {
	lines := [][]byte{[]byte("one line"), []byte("another line"), []byte("the last line")}
	allocs := testing.AllocsPerRun(100, func() {
		l := logBuffer{maxLines: 100, maxBytes: 64 << 10}
		for _, b := range lines {
			l.add(protocol.StreamConsole, b, time.Now())
		}
		l.finish([2]protocol.LogStream{})
	})
	if allocs > 4 {
		t.Errorf("%v allocations for 3 lines, want at most 4", allocs)
	}
}
