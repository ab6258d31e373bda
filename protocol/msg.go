package protocol

import (
	"fmt"
	"io"
)

// Message is a message that can travel in a frame: every message type of this
// package ([*Hello], [*Invoke], [*Error], ...) and [*Unknown].
type Message interface {
	// Type is the frame type the message travels in.
	Type() FrameType
	// Append appends the message's payload (not the frame header) to dst.
	Append(dst []byte) []byte
	// UnmarshalBinary replaces the message with the one encoded in a payload.
	UnmarshalBinary(payload []byte) error
}

// decodable is implemented by this package's message types.
type decodable interface {
	Message
	decode(decoder) error
}

// newMessage returns a zero message for a known frame type, or nil.
func newMessage(t FrameType) decodable {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeWelcome:
		return new(Welcome)
	case TypeHeartbeat:
		return new(Heartbeat)
	case TypeInvoke:
		return new(Invoke)
	case TypeNeedCode:
		return new(NeedCode)
	case TypeCode:
		return new(Code)
	case TypeResult:
		return new(Result)
	case TypeError:
		return new(Error)
	case TypeAck:
		return new(Ack)
	case TypeDrop:
		return new(Drop)
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeStarted:
		return new(Started)
	case TypeDesiredSet:
		return new(DesiredSet)
	case TypeOutboxBatch:
		return new(OutboxBatch)
	case TypeOutboxAck:
		return new(OutboxAck)
	case TypeDesiredDelta:
		return new(DesiredDelta)
	case TypeQuarantine:
		return new(Quarantine)
	}
	return nil
}

// unmarshal resets m and decodes p into it, copying the bytes it keeps.
func unmarshal[T any, PT interface {
	*T
	decodable
}](m PT, p []byte) error {
	*m = *new(T)
	return m.decode(decoder{buf: p, typ: m.Type()})
}

// Unknown is a frame of an optional type (0x40–0x7F) this version does not
// know. ReadMsg returns it so the caller can skip it (or log it); WriteMsg
// sends one as is.
type Unknown struct {
	FrameType FrameType
	Payload   []byte
}

func (u *Unknown) Type() FrameType          { return u.FrameType }
func (u *Unknown) Append(dst []byte) []byte { return append(dst, u.Payload...) }

// UnmarshalBinary keeps a copy of payload; the frame type is left as is.
func (u *Unknown) UnmarshalBinary(payload []byte) error {
	u.Payload = append([]byte(nil), payload...)
	return nil
}

// Decode decodes a frame into its message: a known message, an [*Unknown] for
// an optional type this version does not know, or an error matching
// [ErrUnknownType] for any other unknown type, or [ErrMalformed] for a bad
// payload.
//
// # Notes
//
// Byte fields of the result (Invoke.Args, Code.Wasm, ...) and Unknown.Payload
// alias f.Payload instead of copying it: do not reuse f.Payload while the
// message is in use. Use UnmarshalBinary for a copying decode.
func Decode(f Frame) (Message, error) {
	m := newMessage(f.Type)
	if m == nil {
		if f.Type.Optional() {
			u := &Unknown{FrameType: f.Type}
			if len(f.Payload) > 0 { // an empty payload is nil, as ReadFrame gives it
				u.Payload = f.Payload
			}
			return u, nil
		}
		return nil, fmt.Errorf("%w 0x%02x", ErrUnknownType, uint8(f.Type))
	}
	if err := m.decode(decoder{buf: f.Payload, typ: f.Type, alias: true}); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadMsg reads one frame from r (see [ReadFrame] for max and the framing
// errors) and decodes it (see [Decode]). The caller skips an *Unknown.
//
// Every frame gets a fresh payload, which the returned message may alias.
func ReadMsg(r io.Reader, max uint32) (Message, error) {
	f, err := ReadFrame(r, max)
	if err != nil {
		return nil, err
	}
	return Decode(f)
}

// AppendMsg appends m as a whole frame (header and payload) to dst. It fails
// only if the payload would exceed MaxFrameSize; dst is then returned
// unchanged.
func AppendMsg(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	dst = appendHeader(dst, m.Type(), 0)
	dst = m.Append(dst)
	n := len(dst) - start - frameHeaderLen
	if n > MaxFrameSize {
		return dst[:start], &FrameTooLargeError{Type: m.Type(), Size: uint64(n), Max: MaxFrameSize}
	}
	appendHeader(dst[:start], m.Type(), n)
	return dst, nil
}

// WriteMsg writes m to w as one frame, with a single Write from a pooled
// buffer. The exception is a Code message with a large module: it is written
// in two, the frame header and fields, then the wasm itself, so the module is
// never copied.
func WriteMsg(w io.Writer, m Message) error {
	if c, ok := m.(*Code); ok && len(c.Wasm) > pooledBufMax {
		return writeCode(w, c)
	}
	bp := getBuf()
	defer putBuf(bp)
	b, err := AppendMsg((*bp)[:0], m)
	*bp = b[:0]
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// writeCode writes a Code frame whose wasm is too large to copy: everything
// but the wasm in one Write, then the wasm. The bytes are those of
// AppendMsg, since wasm is the last field.
func writeCode(w io.Writer, c *Code) error {
	bp := getBuf()
	defer putBuf(bp)
	e := encoder{(*bp)[:0]}
	e.buf = appendHeader(e.buf, TypeCode, 0)
	e.string(1, c.Digest)
	e.header(2, len(c.Wasm))
	n := len(e.buf) - frameHeaderLen + len(c.Wasm)
	if n > MaxFrameSize {
		*bp = e.buf[:0]
		return &FrameTooLargeError{Type: TypeCode, Size: uint64(n), Max: MaxFrameSize}
	}
	appendHeader(e.buf[:0], TypeCode, n)
	*bp = e.buf[:0]
	if _, err := w.Write(e.buf); err != nil {
		return err
	}
	_, err := w.Write(c.Wasm)
	return err
}
