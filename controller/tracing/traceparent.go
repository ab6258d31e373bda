package tracing

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

// SpanContext identifies a span across processes: the W3C trace context
// of a traceparent header. The zero value is "no trace".
type SpanContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte // bit 0: sampled
}

// Valid reports whether sc names a span (non-zero trace and span ids).
func (sc SpanContext) Valid() bool { return sc.TraceID != [16]byte{} && sc.SpanID != [8]byte{} }

// Sampled reports whether the trace's spans are to be recorded.
func (sc SpanContext) Sampled() bool { return sc.Flags&1 == 1 }

// String is the traceparent header value: "00-<trace id>-<span id>-<flags>".
func (sc SpanContext) String() string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], sc.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], sc.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{sc.Flags})
	return string(b[:])
}

// Child is a new span of the same trace, with sc's flags.
func (sc SpanContext) Child() SpanContext {
	return SpanContext{TraceID: sc.TraceID, SpanID: NewSpanID(), Flags: sc.Flags}
}

// NewTrace starts a new sampled trace: random trace and span ids.
func NewTrace() SpanContext {
	var sc SpanContext
	for sc.TraceID == [16]byte{} {
		binary.BigEndian.PutUint64(sc.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(sc.TraceID[8:], rand.Uint64())
	}
	sc.SpanID, sc.Flags = NewSpanID(), 1
	return sc
}

// NewSpanID is a random non-zero span id.
func NewSpanID() [8]byte {
	var id [8]byte
	for id == [8]byte{} {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// ParseTraceParent reads a W3C traceparent header value. It accepts
// version 00 exactly and, as the specification asks, later versions by
// their first four fields; anything malformed (wrong lengths, upper-case
// or non-hex digits, all-zero ids, version ff) is reported as !ok, and the
// caller then ignores the header.
func ParseTraceParent(s string) (sc SpanContext, ok bool) {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return SpanContext{}, false
	}
	var ver [1]byte
	if !lowerHex(s[0:2]) || hexDecode(ver[:], s[0:2]) != nil || ver[0] == 0xff {
		return SpanContext{}, false
	}
	if ver[0] == 0 && len(s) != 55 || ver[0] != 0 && len(s) > 55 && s[55] != '-' {
		return SpanContext{}, false
	}
	var flags [1]byte
	if !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) ||
		hexDecode(sc.TraceID[:], s[3:35]) != nil || hexDecode(sc.SpanID[:], s[36:52]) != nil || hexDecode(flags[:], s[53:55]) != nil {
		return SpanContext{}, false
	}
	sc.Flags = flags[0]
	if !sc.Valid() {
		return SpanContext{}, false
	}
	return sc, true
}

func hexDecode(dst []byte, s string) error {
	_, err := hex.Decode(dst, []byte(s))
	return err
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
