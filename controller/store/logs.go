package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Activation logs are kept in one value per record, in both stores (the
// Postgres column activations.logs, migration 0009; the embedded record's
// "logs" field), encoded as
//
//	version   byte     1
//	per line:
//	  delta   varint   µs since the previous line's time (the first: since the Unix epoch; the zero time is its UnixMicro)
//	  stream  uvarint  0 console, 1 stderr, 2 wisp, 3 other: followed by uvarint length and the name
//	  text    uvarint length, then the bytes as given
//
// A line costs its text and 3 to 5 bytes (lines a few ms apart), the first
// line a few more. Texts are kept as bytes: a guest's log may hold NUL
// bytes and invalid UTF-8, which Postgres text refuses. No lines is no
// value (NULL, or the field absent), read back as nil.

const logsVersion = 1

// logStreams are the streams with a one-byte code, in code order.
var logStreams = [...]string{"console", "stderr", "wisp"}

const logStreamOther = uint64(len(logStreams))

// errBadLogs is returned for a logs value that does not decode.
var errBadLogs = errors.New("corrupt log lines")

// encodeLogs is the stored value of lines; nil for none.
func encodeLogs(lines []LogLine) []byte {
	if len(lines) == 0 {
		return nil
	}
	size := 1
	for _, l := range lines {
		size += len(l.Text) + 6
	}
	b := make([]byte, 1, size+8)
	b[0] = logsVersion
	var prev int64
	for _, l := range lines {
		us := l.Time.UnixMicro()
		b = binary.AppendVarint(b, us-prev)
		prev = us
		code := logStreamOther
		for i, s := range logStreams {
			if l.Stream == s {
				code = uint64(i)
				break
			}
		}
		b = binary.AppendUvarint(b, code)
		if code == logStreamOther {
			b = binary.AppendUvarint(b, uint64(len(l.Stream)))
			b = append(b, l.Stream...)
		}
		b = binary.AppendUvarint(b, uint64(len(l.Text)))
		b = append(b, l.Text...)
	}
	return b
}

// decodeLogs is the inverse of encodeLogs: times in UTC to the
// microsecond, the zero time zero.
func decodeLogs(b []byte) ([]LogLine, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != logsVersion {
		return nil, fmt.Errorf("%w: version %d", errBadLogs, b[0])
	}
	b = b[1:]
	var (
		out  []LogLine
		prev int64
	)
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	for len(b) > 0 {
		delta, k := binary.Varint(b)
		if k <= 0 {
			return nil, errBadLogs
		}
		b = b[k:]
		prev += delta
		code, k := binary.Uvarint(b)
		if k <= 0 || code > logStreamOther {
			return nil, errBadLogs
		}
		b = b[k:]
		l := LogLine{Time: microsTime(prev)}
		ok := true
		if code == logStreamOther {
			l.Stream, ok = str()
		} else {
			l.Stream = logStreams[code]
		}
		if ok {
			l.Text, ok = str()
		}
		if !ok {
			return nil, errBadLogs
		}
		out = append(out, l)
	}
	return out, nil
}
