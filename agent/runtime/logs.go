package runtime

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wispfn/wisp/protocol"
)

// logBuffer keeps the log lines of one invocation within Limits.LogLines and
// Limits.LogBytes. Every byte the guest makes it keep counts against
// LogBytes: the text of the lines kept and the partial stdio lines still
// waiting for their newline. What does not fit is dropped and counted, and
// finish appends one StreamPlatform marker line saying so.
//
// A line's time is when it was captured: the __console_log call, or the
// write that ended a stdio line (its newline, or the end of the
// invocation). Lines are kept in that order, so times never go back.
//
// It is used by the goroutine running the guest only.
type logBuffer struct {
	lines              []protocol.LogLine
	maxLines, maxBytes int
	bytes              int // kept: text of lines + partial lines
	droppedLines       int // lines dropped whole
	droppedBytes       int // bytes dropped (of whole lines and of cut ones)
	// partial are the unfinished lines of stdio fds 1 and 2.
	partial [2]partialLine
}

// partialLine is a stdio line without its newline yet.
type partialLine struct {
	buf []byte
	cut bool // bytes of this line were dropped
}

// firstLinesCap is the room of the first allocation of lines: most
// functions log a few lines, and growing 1, 2, 4 costs three allocations.
const firstLinesCap = 4

func (l *logBuffer) full() bool { return len(l.lines) >= l.maxLines }

// room is how many more bytes may be kept.
func (l *logBuffer) room() int { return max(l.maxBytes-l.bytes, 0) }

// add keeps a whole line, or as much of it as fits (cut at a UTF-8
// boundary), or drops it.
func (l *logBuffer) add(stream protocol.LogStream, text []byte, now time.Time) {
	if l.full() {
		l.droppedLines++
		l.droppedBytes += len(text)
		return
	}
	if n := l.room(); len(text) > n {
		keep := utf8Prefix(text, n)
		l.droppedBytes += len(text) - keep
		if keep == 0 && len(text) > 0 {
			l.droppedLines++
			return
		}
		text = text[:keep]
	}
	l.keep(stream, string(text), now)
}

// addString is add for a line the host makes (no copy needed).
func (l *logBuffer) addString(stream protocol.LogStream, text string, now time.Time) {
	if l.full() || len(text) > l.room() {
		l.droppedLines++
		l.droppedBytes += len(text)
		return
	}
	l.keep(stream, text, now)
}

func (l *logBuffer) keep(stream protocol.LogStream, text string, now time.Time) {
	if l.lines == nil {
		l.lines = make([]protocol.LogLine, 0, min(firstLinesCap, l.maxLines))
	}
	l.lines = append(l.lines, protocol.LogLine{UnixUS: uint64(now.UnixMicro()), Stream: stream, Text: text})
	l.bytes += len(text)
}

// write takes what a guest wrote to stdio fd (1 or 2): each complete line
// becomes a log line of stream; an unfinished one waits, counted against
// the bound, for its newline. Empty lines are skipped. A line is never
// kept whole in a second buffer: bytes past the bound are dropped on the
// way in, so a flood without newlines keeps at most LogBytes.
func (l *logBuffer) write(fd int, stream protocol.LogStream, p []byte) {
	pl := &l.partial[fd-1]
	var now time.Time
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.hold(pl, p)
			return
		}
		if now.IsZero() {
			now = time.Now()
		}
		line := p[:i]
		p = p[i+1:]
		if len(pl.buf) == 0 && !pl.cut {
			// The usual case: a whole line in one write, copied once.
			if line = trimCR(line); len(line) > 0 {
				l.add(stream, line, now)
			}
			continue
		}
		l.hold(pl, line)
		l.endPartial(pl, stream, now)
	}
}

// hold appends b to a partial line, as far as the bound allows.
func (l *logBuffer) hold(pl *partialLine, b []byte) {
	n := len(b)
	if l.full() || pl.cut {
		n = 0 // the line will be dropped, or was cut already: keep nothing more of it
	}
	n = min(n, l.room())
	pl.buf = append(pl.buf, b[:n]...)
	l.bytes += n
	if n < len(b) {
		l.droppedBytes += len(b) - n
		pl.cut = true
	}
}

// endPartial turns a partial line into a log line.
func (l *logBuffer) endPartial(pl *partialLine, stream protocol.LogStream, now time.Time) {
	l.bytes -= len(pl.buf) // add counts what it keeps again
	text, cut := trimCR(pl.buf), pl.cut
	pl.buf, pl.cut = pl.buf[:0], false
	switch {
	case len(text) == 0 && cut:
		l.droppedLines++
	case len(text) > 0:
		if cut { // do not end the line inside a UTF-8 sequence
			keep := validEnd(text)
			l.droppedBytes += len(text) - keep
			text = text[:keep]
		}
		l.add(stream, text, now)
	}
}

// finish ends the partial lines (a guest need not end its last line) and,
// when anything was dropped, appends the marker line.
func (l *logBuffer) finish(streams [2]protocol.LogStream) {
	now := time.Now()
	for i := range l.partial {
		if pl := &l.partial[i]; len(pl.buf) > 0 || pl.cut {
			l.endPartial(pl, streams[i], now)
		}
	}
	if l.droppedLines > 0 || l.droppedBytes > 0 {
		l.lines = append(l.lines, protocol.LogLine{UnixUS: uint64(now.UnixMicro()), Stream: protocol.StreamPlatform,
			Text: TruncatedMarker(l.droppedLines, l.droppedBytes, l.maxLines, l.maxBytes)})
	}
}

// TruncatedMarker is the text of the line that ends a log cut at its
// bound (stream protocol.StreamPlatform): it starts with "log truncated".
func TruncatedMarker(droppedLines, droppedBytes, maxLines, maxBytes int) string {
	return fmt.Sprintf("log truncated: %d more lines and %d bytes dropped (bound: %d lines, %d bytes per activation)",
		droppedLines, droppedBytes, maxLines, maxBytes)
}

// text joins the lines of one stream, with the partial line of fd, as a
// WASI command's stderr for its error (bounded like the log).
func (l *logBuffer) text(stream protocol.LogStream, fd int) string {
	var b strings.Builder
	for _, ln := range l.lines {
		if ln.Stream == stream {
			b.WriteString(ln.Text)
			b.WriteByte('\n')
		}
	}
	b.Write(l.partial[fd-1].buf)
	return strings.TrimRight(b.String(), "\n")
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// utf8Prefix is the length of the longest prefix of b of at most n bytes
// that does not end inside a UTF-8 sequence (bytes that are not UTF-8 are
// cut at n).
func utf8Prefix(b []byte, n int) int {
	if len(b) <= n {
		return len(b)
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}

// validEnd is the length of b without an incomplete UTF-8 sequence at its
// end (a line cut at the bound).
func validEnd(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}
