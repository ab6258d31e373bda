package protocol

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzReadMsg feeds arbitrary streams to ReadMsg. It must never panic, and
// every message it decodes must re-encode canonically and decode to an equal
// message.
func FuzzReadMsg(f *testing.F) {
	for _, g := range golden {
		f.Add(unhex(f, g))
	}
	f.Add(unhex(f, `40 00000003 010203`))                      // optional, unknown
	f.Add(unhex(f, `10 00000000`))                             // reserved core
	f.Add(unhex(f, `07 00000006 0b0102 63017f`))               // bool length 2, unknown tag
	f.Add(unhex(f, `01 00000003 ff ff ff`))                    // bad varint
	f.Add(unhex(f, `06 ffffffff`))                             // 4 GiB declared
	f.Add(append(unhex(f, golden[1]), unhex(f, golden[2])...)) // two frames
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			m, err := ReadMsg(r, 1<<20)
			if err != nil {
				checkReadErr(t, err)
				return
			}
			checkRoundTrip(t, m)
		}
	})
}

// FuzzDecode dispatches a payload to the decoder of any frame type; it gets to
// the field decoders faster than FuzzReadMsg, which must first find a
// consistent frame header.
func FuzzDecode(f *testing.F) {
	for _, g := range golden {
		b := unhex(f, g)
		f.Add(b[0], b[frameHeaderLen:])
	}
	f.Add(uint8(TypeResult), unhex(f, `0b 02 0100`))
	f.Add(uint8(TypeHeartbeat), unhex(f, `01 0b ffffffffffffffffffff01`))
	f.Add(uint8(0x41), []byte("x"))
	f.Add(uint8(TypeDesiredDelta), unhex(f, `03 06 01016d020166 04 06 01016d020166`)) // a name twice
	f.Fuzz(func(t *testing.T, typ uint8, payload []byte) {
		m, err := Decode(Frame{Type: FrameType(typ), Payload: payload})
		if err != nil {
			checkReadErr(t, err)
			return
		}
		checkRoundTrip(t, m)
		// The copying decoder agrees with the aliasing one.
		if _, unknown := m.(*Unknown); !unknown {
			c := newMessage(FrameType(typ))
			if err := c.UnmarshalBinary(payload); err != nil || !reflect.DeepEqual(c, m) {
				t.Fatalf("UnmarshalBinary: %v\n got %#v\nwant %#v", err, c, m)
			}
		}
	})
}

func checkReadErr(t *testing.T, err error) {
	t.Helper()
	switch {
	case err == io.EOF,
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, ErrMalformed),
		errors.Is(err, ErrUnknownType),
		errors.Is(err, ErrFrameTooLarge):
	default:
		t.Fatalf("unexpected kind of error: %v", err)
	}
}

// checkRoundTrip: m encodes; the encoding decodes to m; and encoding that
// gives the same bytes (the encoding is canonical).
func checkRoundTrip(t *testing.T, m Message) {
	t.Helper()
	b1, err := AppendMsg(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ReadMsg(bytes.NewReader(b1), 0)
	if err != nil {
		t.Fatalf("re-encoded %#v does not decode: %v", m, err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip changed the message:\n got %#v\nwant %#v", m2, m)
	}
	b2, _ := AppendMsg(nil, m2)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding is not canonical:\n%x\n%x", b1, b2)
	}
}
