package protocol

// LogStream says where a log line came from.
type LogStream uint8

// The streams a log line can come from. A reader that meets a stream it
// does not know keeps the number and shows the line as it is.
const (
	// StreamConsole: a FunLess-ABI guest's __console_log, or what it wrote
	// to its WASI stdout or stderr.
	StreamConsole LogStream = 0
	// StreamStderr: what a WASI command wrote to stderr (its stdout is its
	// output).
	StreamStderr LogStream = 1
	// StreamPlatform: a line the agent adds itself, such as the marker
	// that says lines were dropped at the log bound.
	StreamPlatform LogStream = 2
)

// String returns the stream's name as the REST API and the CLI show it.
func (s LogStream) String() string {
	switch s {
	case StreamConsole:
		return "console"
	case StreamStderr:
		return "stderr"
	case StreamPlatform:
		return "wisp"
	}
	return "stream" + itoa(uint64(s))
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// LogLine is one line a function wrote during an activation, nested in
// Result (tag 14) and OutboxEntry (tag 11):
//
//	1 unix_us  uint    when the agent captured it (µs since the epoch)
//	2 stream   uint    LogStream (uint8)
//	3 text     string  without its line ending
type LogLine struct {
	UnixUS uint64    // 1
	Stream LogStream // 2
	Text   string    // 3
}

func (l *LogLine) append(dst []byte) []byte {
	e := encoder{dst}
	e.uint(1, l.UnixUS)
	e.uint(2, uint64(l.Stream))
	e.string(3, l.Text)
	return e.buf
}

func (l *LogLine) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			l.UnixUS = d.uint64()
		case 2:
			l.Stream = LogStream(d.uint(8))
		case 3:
			l.Text = d.string()
		}
	}
	return d.err
}

// MaxLogLines is the most log lines one message may carry: a Result, one
// OutboxEntry, and all the entries of an OutboxBatch together. More makes
// the message malformed, so a peer cannot turn a 64 MiB frame of empty
// lines (2 bytes each on the wire) into a gigabyte of decoded ones. An
// agent keeps at most 10,000 lines and a marker per activation, and cuts
// its outbox batches to stay within it.
const MaxLogLines = 1 << 16

// appendLogLines encodes lines as repeated nested values of tag.
func appendLogLines(e *encoder, tag uint64, lines []LogLine) {
	var sub []byte
	for i := range lines {
		sub = lines[i].append(sub[:0])
		e.header(tag, len(sub)) // an empty line is still a line
		e.buf = append(e.buf, sub...)
	}
}

// decodeLogLine decodes one nested LogLine value of d and appends it.
func decodeLogLine(d *decoder, lines []LogLine) []LogLine {
	if len(lines) >= MaxLogLines {
		d.fail("more than MaxLogLines log lines")
		return lines
	}
	var l LogLine
	if err := l.decode(decoder{buf: d.val, typ: d.typ, alias: d.alias}); err != nil {
		if d.err == nil {
			d.err = err
		}
		return lines
	}
	return append(lines, l)
}
