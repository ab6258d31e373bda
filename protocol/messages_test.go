package protocol

import (
	"bytes"
	"encoding"
	"errors"
	"math"
	"reflect"
	"testing"
)

var (
	_ encoding.BinaryAppender    = (*Hello)(nil)
	_ encoding.BinaryMarshaler   = (*Result)(nil)
	_ encoding.BinaryUnmarshaler = (*Invoke)(nil)
	_ Message                    = (*Error)(nil)
	_ Message                    = (*Unknown)(nil)
	_ error                      = (*Error)(nil)
)

// roundTripMsgs covers every message type: zero values, the golden values,
// and extreme values.
func roundTripMsgs() map[string]Message {
	max := uint64(math.MaxUint64)
	msgs := map[string]Message{
		"Hello/zero":        &Hello{},
		"Welcome/zero":      &Welcome{},
		"Heartbeat/zero":    &Heartbeat{},
		"Invoke/zero":       &Invoke{},
		"NeedCode/zero":     &NeedCode{},
		"Code/zero":         &Code{},
		"Result/zero":       &Result{},
		"Error/zero":        &Error{},
		"Ack/zero":          &Ack{},
		"Drop/zero":         &Drop{},
		"Ping/zero":         &Ping{},
		"Pong/zero":         &Pong{},
		"Started/zero":      &Started{},
		"DesiredSet/zero":   &DesiredSet{},
		"OutboxBatch/zero":  &OutboxBatch{},
		"OutboxAck/zero":    &OutboxAck{},
		"Quarantine/zero":   &Quarantine{},
		"DesiredDelta/zero": &DesiredDelta{},
		"DesiredDelta/max": &DesiredDelta{Base: SetDigest{0xff, 31: 1}, Result: SetDigest{1},
			Upserts: []DesiredFunction{{Module: "m", Name: "f", Secrets: []Secret{{Name: "k", Value: []byte{0}}}, Timers: []Timer{{EveryMS: max}}}},
			Removes: []FunctionName{{Module: "m", Name: "g"}, {Module: "n", Name: "f"}}},
		"DesiredSet/digest": &DesiredSet{Digest: SetDigest{31: 7}},
		"Heartbeat/resync":  &Heartbeat{DesiredResync: true},
		"Hello/max": &Hello{
			AgentID: "agent-\x00-\xff", Labels: []string{"", "", "a=b"},
			MemTotalBytes: max, MemAvailBytes: max, CPUs: max, Inflight: max,
			Digests: []string{"", "sha256:00"}, JoinSecret: []byte{0}, Credential: bytes.Repeat([]byte{0xff}, 300),
			ProtocolVersion: max,
			Crashed:         []QuarantineEntry{{}, {Digest: "sha256:00", Reason: "r", SinceUnixMS: max}},
		},
		"Welcome/max":    &Welcome{AgentID: "a", Credential: []byte{1}, ControllerID: "c", HeartbeatIntervalMS: max, ProtocolVersion: Version, CrashesRecorded: true},
		"Quarantine/max": &Quarantine{Entries: []QuarantineEntry{{}, {Digest: "sha256:ff", Reason: "x", SinceUnixMS: max}}},
		"Heartbeat/max":  &Heartbeat{MemAvailBytes: max, Inflight: max, InvocationsTotal: max, SentUnixMS: max},
		"Invoke/max": &Invoke{
			ActivationID: "x", Args: bytes.Repeat([]byte("a"), 1<<16), DeadlineUnixMS: max,
			AllowedHosts: []string{""}, TimeoutMS: max, MemoryLimitBytes: max,
		},
		"Result/max": &Result{
			Code: math.MaxUint16, Logs: []LogLine{{}, {UnixUS: max, Stream: 255, Text: "x"}}, QueueUS: max, TransferUS: max, CompileUS: max,
			InstantiateUS: max, RunUS: max, Compiled: true, DiskCacheHit: true, ExitCode: math.MaxUint32,
		},
		"DesiredSet/config": &DesiredSet{Functions: []DesiredFunction{{Module: "m", Name: "f", Env: []string{"A=1", ""}, AllowHosts: []string{"*.example.com"},
			Secrets: []Secret{{Name: "k", Value: []byte{0}}, {}}, Timers: []Timer{{Cron: "*/1 * * * *"}, {EveryMS: 1000}, {}}, KeepDigests: []string{"sha256:00"}}}},
		"Invoke/env":       &Invoke{ActivationID: "a", Env: []string{"A=1", "S=secret"}},
		"OutboxBatch/logs": &OutboxBatch{Entries: []OutboxEntry{{ActivationID: "a", Logs: []LogLine{{}, {UnixUS: max, Stream: StreamStderr, Text: "e"}}, TraceParent: "tp"}}},
		"Error/max":        &Error{Code: math.MaxUint16, Message: "m"},
		"Drop/one":         &Drop{Digests: []string{""}},
		"Ping/max":         &Ping{Nonce: max, Payload: make([]byte, 200)},
		"Pong/max":         &Pong{Nonce: max, Payload: make([]byte, 200)},
		"Started/id":       &Started{ActivationID: "01KAW0000000000000000000AB"},
	}
	for _, m := range goldenMsgs() {
		msgs[m.Type().String()+"/golden"] = m
	}
	return msgs
}

func TestRoundTrip(t *testing.T) {
	for name, m := range roundTripMsgs() {
		t.Run(name, func(t *testing.T) {
			// Through a stream.
			var buf bytes.Buffer
			if err := WriteMsg(&buf, m); err != nil {
				t.Fatal(err)
			}
			got, err := ReadMsg(&buf, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("ReadMsg:\n got %#v\nwant %#v", got, m)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes left after the frame", buf.Len())
			}
			// Through MarshalBinary/UnmarshalBinary, into a dirty message.
			p, err := m.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			dirty := newMessage(m.Type())
			if err := dirty.UnmarshalBinary(goldenPayload(t, m.Type())); err != nil {
				t.Fatal(err)
			}
			if err := dirty.UnmarshalBinary(p); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dirty, m) {
				t.Fatalf("UnmarshalBinary did not reset the message:\n got %#v\nwant %#v", dirty, m)
			}
		})
	}
}

// goldenPayload is the payload of the golden frame of type t.
func goldenPayload(t *testing.T, typ FrameType) []byte {
	for i, m := range goldenMsgs() {
		if m.Type() == typ {
			return unhex(t, golden[i])[frameHeaderLen:]
		}
	}
	t.Fatalf("no golden %v", typ)
	return nil
}

func TestUnmarshalBinaryCopies(t *testing.T) {
	p := (&Code{Digest: "d", Wasm: []byte("wasm")}).Append(nil)
	var c Code
	if err := c.UnmarshalBinary(p); err != nil {
		t.Fatal(err)
	}
	clear(p)
	if string(c.Wasm) != "wasm" || c.Digest != "d" {
		t.Fatalf("UnmarshalBinary kept a reference to its input: %q %q", c.Digest, c.Wasm)
	}
	// Decode, by contrast, aliases the payload.
	p = (&Code{Digest: "d", Wasm: []byte("wasm")}).Append(nil)
	m, err := Decode(Frame{Type: TypeCode, Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	clear(p)
	if w := m.(*Code).Wasm; string(w) != "\x00\x00\x00\x00" {
		t.Fatalf("Decode copied the wasm: %q", w)
	}
}

// TestUnknownFields: fields with tags a message does not know, anywhere in
// the payload and of any shape, are skipped.
func TestUnknownFields(t *testing.T) {
	for _, m := range goldenMsgs() {
		t.Run(m.Type().String(), func(t *testing.T) {
			extra := func(tag uint64, val string) []byte {
				e := encoder{}
				e.header(tag, len(val))
				return append(e.buf, val...)
			}
			var p []byte
			p = append(p, extra(99, "\xff\xff\xff")...)       // not a valid uvarint: unknown tags are not parsed
			p = append(p, extra(1<<40, "")...)                // huge tag, empty value
			p = append(p, m.Append(nil)...)                   // the real fields
			p = append(p, extra(60, "future field value")...) // a tag a later version might add
			p = append(p, extra(0, "x")...)                   // tag 0 is never assigned
			got, err := Decode(Frame{Type: m.Type(), Payload: p})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("got %#v\nwant %#v", got, m)
			}
		})
	}
}

func TestFieldOrderIsFree(t *testing.T) {
	// The golden Error with its fields reversed.
	p := unhex(t, `02 0a 62616420736563726574  01 01 02`)
	var e Error
	if err := e.UnmarshalBinary(p); err != nil {
		t.Fatal(err)
	}
	if e != (Error{Code: Unauthorized, Message: "bad secret"}) {
		t.Fatalf("got %+v", e)
	}
}

func TestLastValueWins(t *testing.T) {
	p := unhex(t, `01 01 02  01 01 05`)
	var e Error
	if err := e.UnmarshalBinary(p); err != nil {
		t.Fatal(err)
	}
	if e.Code != Overloaded {
		t.Fatalf("code %v, want the last one, %v", e.Code, Overloaded)
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name    string
		typ     FrameType
		payload string
	}{
		{"truncated value", TypeError, `02 0a 626164`},
		{"truncated length", TypeError, `02`},
		{"length past end by one", TypeAck, `01 03 6162`},
		{"bad tag varint", TypeAck, `ff ff ff ff ff ff ff ff ff ff 01`},
		{"unterminated tag varint", TypeAck, `80`},
		{"bad length varint", TypeAck, `01 ff ff ff ff ff ff ff ff ff ff 01`},
		{"huge length", TypeAck, `01 ffffffffffffffff7f`},
		{"bool length 2", TypeResult, `0b 02 0100`},
		{"bool length 0", TypeResult, `0c 00`},
		{"bool value 2", TypeResult, `0b 01 02`},
		{"uint empty", TypeHeartbeat, `01 00`},
		{"uint trailing byte", TypeHeartbeat, `01 02 0100`},
		{"uint unterminated", TypeHeartbeat, `01 01 80`},
		{"uint overflows 64 bits", TypeHeartbeat, `01 0b ffffffffffffffffffff01`},
		{"error code overflows uint16", TypeError, `01 03 808004`},
		{"result code overflows uint16", TypeResult, `02 03 808004`},
		{"exit code overflows uint32", TypeResult, `0d 05 8080808010`},
		{"error after good fields", TypeInvoke, `01 02 6131  06 00`},
		{"bad nested quarantine entry", TypeQuarantine, `01 02 0300`},
		{"bad nested crash in hello", TypeHello, `10 03 01 05 61`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := unhex(t, tt.payload)
			_, err := Decode(Frame{Type: tt.typ, Payload: p})
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode: err = %v, want ErrMalformed", err)
			}
			if err := newMessage(tt.typ).UnmarshalBinary(p); !errors.Is(err, ErrMalformed) {
				t.Fatalf("UnmarshalBinary: err = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestLimitsAccepted: the largest values of narrowed fields decode.
func TestLimitsAccepted(t *testing.T) {
	var r Result
	if err := r.UnmarshalBinary(unhex(t, `02 03 ffff03  0d 05 ffffffff0f`)); err != nil {
		t.Fatal(err)
	}
	if r.Code != math.MaxUint16 || r.ExitCode != math.MaxUint32 {
		t.Fatalf("got code %d exit %d", r.Code, r.ExitCode)
	}
}

func TestSignedFields(t *testing.T) {
	for _, v := range []int64{1, -1, 63, -64, 64, math.MaxInt64, math.MinInt64} {
		e := encoder{}
		e.int(3, v)
		d := decoder{buf: e.buf}
		if !d.next() || d.tag != 3 {
			t.Fatalf("%d: no field 3 in %x", v, e.buf)
		}
		if got := d.int(); got != v || d.err != nil {
			t.Fatalf("%d: decoded %d, err %v (bytes %x)", v, got, d.err, e.buf)
		}
		if d.next() {
			t.Fatalf("%d: more than one field in %x", v, e.buf)
		}
	}
	e := encoder{}
	e.int(3, 0)
	if len(e.buf) != 0 {
		t.Fatalf("zero written as %x", e.buf)
	}
	if got := unhex(t, `03 01 03`); !bytes.Equal(func() []byte { e := encoder{}; e.int(3, -2); return e.buf }(), got) {
		t.Fatalf("-2 is not zigzag 3")
	}
	d := decoder{buf: unhex(t, `03 02 0300`)}
	d.next()
	if d.int(); !errors.Is(d.err, ErrMalformed) {
		t.Fatalf("trailing byte after a signed value: err %v", d.err)
	}
}

func TestErrorCodes(t *testing.T) {
	err := error(&Error{Code: Unauthorized, Message: "bad join secret"})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatal("errors.Is does not match by code")
	}
	if errors.Is(err, ErrBadRequest) {
		t.Fatal("errors.Is matches a different code")
	}
	if got, want := err.Error(), "wisp: unauthorized: bad join secret"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := ErrDraining.Error(), "wisp: draining"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if s := ErrorCode(4242).String(); s != "error code 4242" {
		t.Fatalf("unknown code: %q", s)
	}
	for c := range ErrorCode(1000) {
		want := c >= 100 && c < 200
		if IsFunctionError(c) != want {
			t.Fatalf("IsFunctionError(%d) = %v", c, !want)
		}
	}
	// Every named function code is a function error and every named
	// general one is not.
	for c, name := range codeNames {
		if (c >= NotWasm) != IsFunctionError(c) {
			t.Errorf("%d %s: IsFunctionError = %v", c, name, IsFunctionError(c))
		}
	}
	for c := range ErrorCode(1000) {
		want := c == Overloaded || c == Draining
		if NotStarted(c) != want {
			t.Errorf("NotStarted(%v) = %v", c, !want)
		}
	}
	if (&Result{Code: OK}).Err() != nil {
		t.Fatal("Result{OK}.Err() != nil")
	}
	if err := (&Result{Code: Trap, Message: "unreachable"}).Err(); !errors.Is(err, &Error{Code: Trap}) {
		t.Fatalf("Result.Err() = %v", err)
	}
}

// TestStableNumbers pins every number that crosses the wire: renumbering is
// a wire change.
func TestStableNumbers(t *testing.T) {
	codes := map[ErrorCode]uint16{
		OK: 0, BadRequest: 1, Unauthorized: 2, UnsupportedVersion: 3, Internal: 4, Overloaded: 5,
		Draining: 6, UnknownDigest: 7, NotWasm: 100, InvalidModule: 101, UnknownImport: 102,
		MissingExport: 103, Trap: 104, Timeout: 105, Canceled: 106, MemoryLimit: 107,
		InputTooLarge: 108, InvalidInput: 109, OutputNotJSON: 110, OutputTooLarge: 111,
		GuestError: 112, Exit: 113, ModuleLimit: 114, CompileBudget: 115, Quarantined: 116,
	}
	if len(codes) != len(codeNames) {
		t.Errorf("%d codes pinned, %d named", len(codes), len(codeNames))
	}
	for c, n := range codes {
		if uint16(c) != n {
			t.Errorf("%v = %d, want %d", c, c, n)
		}
	}
	types := map[FrameType]uint8{
		TypeHello: 1, TypeWelcome: 2, TypeHeartbeat: 3, TypeInvoke: 4, TypeNeedCode: 5, TypeCode: 6,
		TypeResult: 7, TypeError: 8, TypeAck: 9, TypeDrop: 10, TypePing: 11, TypePong: 12, TypeStarted: 13,
		TypeQuarantine: 14, TypeDesiredSet: 16, TypeOutboxBatch: 17, TypeOutboxAck: 18, TypeDesiredDelta: 19,
	}
	for ft, n := range types {
		if uint8(ft) != n {
			t.Errorf("%v = %d, want %d", ft, ft, n)
		}
		if newMessage(ft) == nil || newMessage(ft).Type() != ft {
			t.Errorf("%v: newMessage does not know it", ft)
		}
	}
	closes := map[CloseCode]uint64{CloseNoError: 0, CloseShutdown: 1, CloseRefused: 2, CloseProtocolViolation: 3, CloseSuperseded: 4}
	for c, n := range closes {
		if uint64(c) != n {
			t.Errorf("%v = %d, want %d", c, c, n)
		}
	}
	if ALPN != "wisp/1" || Version != 5 || MaxFrameSize != 64<<20 {
		t.Errorf("ALPN %q, Version %d, MaxFrameSize %d", ALPN, Version, MaxFrameSize)
	}
}

// A version 2 agent sends its logs as bare strings in Result tag 5: they
// read as console lines without a time, in order, empty ones kept.
func TestResultReadsVersion2Logs(t *testing.T) {
	var e encoder
	e.string(1, "a1")
	e.strings(5, []string{"one", "", "three"})
	var r Result
	if err := r.UnmarshalBinary(e.buf); err != nil {
		t.Fatal(err)
	}
	want := []LogLine{{Text: "one"}, {}, {Text: "three"}}
	if !reflect.DeepEqual(r.Logs, want) {
		t.Fatalf("logs %#v, want %#v", r.Logs, want)
	}
}

// A malformed nested log line makes the whole message malformed.
func TestResultMalformedLogLine(t *testing.T) {
	var e encoder
	e.bytes(14, []byte{0x02, 0x01, 0xff}) // stream 255 is fine; this is a 1-byte uvarint that does not end
	var r Result
	err := r.UnmarshalBinary(e.buf)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed", err)
	}
	e = encoder{}
	e.bytes(14, []byte{0x02, 0x02, 0x80, 0x02}) // stream 256 overflows uint8
	if err := r.UnmarshalBinary(e.buf); !errors.Is(err, ErrMalformed) {
		t.Fatalf("stream 256: err %v, want ErrMalformed", err)
	}
}

func TestLogStreamString(t *testing.T) {
	for s, want := range map[LogStream]string{StreamConsole: "console", StreamStderr: "stderr", StreamPlatform: "wisp", 9: "stream9", 255: "stream255"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", s, got, want)
		}
	}
}

// A peer cannot make a receiver decode more than MaxLogLines lines from
// one message: empty lines cost 2 bytes on the wire and 32 decoded.
func TestMaxLogLines(t *testing.T) {
	at := &Result{Logs: make([]LogLine, MaxLogLines)}
	var r Result
	if err := r.UnmarshalBinary(at.Append(nil)); err != nil || len(r.Logs) != MaxLogLines {
		t.Fatalf("at the cap: %v, %d lines", err, len(r.Logs))
	}
	over := &Result{Logs: make([]LogLine, MaxLogLines+1)}
	if err := r.UnmarshalBinary(over.Append(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over the cap: %v, want ErrMalformed", err)
	}
	half := OutboxEntry{Logs: make([]LogLine, MaxLogLines/2+1)}
	batch := &OutboxBatch{Entries: []OutboxEntry{half, half}}
	var b OutboxBatch
	if err := b.UnmarshalBinary(batch.Append(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a batch over the cap: %v, want ErrMalformed", err)
	}
	if err := b.UnmarshalBinary((&OutboxBatch{Entries: []OutboxEntry{half}}).Append(nil)); err != nil {
		t.Fatalf("a batch within the cap: %v", err)
	}
}
