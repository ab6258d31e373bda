package protocol

import (
	"encoding/binary"
	"fmt"
)

// encoder appends fields (tag | length | value) to buf. Methods for single
// fields omit zero values; strings writes every element of a repeated field.
// Callers write fields in ascending tag order.
type encoder struct{ buf []byte }

func (e *encoder) header(tag uint64, n int) {
	e.buf = binary.AppendUvarint(e.buf, tag)
	e.buf = binary.AppendUvarint(e.buf, uint64(n))
}

func (e *encoder) uint(tag, v uint64) {
	if v == 0 {
		return
	}
	e.header(tag, uvarintLen(v))
	e.buf = binary.AppendUvarint(e.buf, v)
}

func (e *encoder) int(tag uint64, v int64) {
	if v == 0 {
		return
	}
	u := uint64(v<<1) ^ uint64(v>>63) // zigzag, as binary.AppendVarint does
	e.header(tag, uvarintLen(u))
	e.buf = binary.AppendVarint(e.buf, v)
}

func (e *encoder) bool(tag uint64, v bool) {
	if v {
		e.header(tag, 1)
		e.buf = append(e.buf, 1)
	}
}

func (e *encoder) string(tag uint64, s string) {
	if s != "" {
		e.header(tag, len(s))
		e.buf = append(e.buf, s...)
	}
}

func (e *encoder) bytes(tag uint64, b []byte) {
	if len(b) != 0 {
		e.header(tag, len(b))
		e.buf = append(e.buf, b...)
	}
}

// strings writes a repeated string field, empty elements included.
func (e *encoder) strings(tag uint64, ss []string) {
	for _, s := range ss {
		e.header(tag, len(s))
		e.buf = append(e.buf, s...)
	}
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decoder walks the fields of one payload:
//
//	d := decoder{buf: p, typ: TypeHello}
//	for d.next() {
//		switch d.tag {
//		case 1:
//			m.AgentID = d.string()
//		}
//	}
//	return d.err
//
// Value methods read the current field and record the first error; next
// returns false once an error is recorded or the payload is consumed.
type decoder struct {
	buf   []byte    // the rest of the payload
	typ   FrameType // for error messages
	alias bool      // bytes values may alias buf instead of being copied
	tag   uint64    // current field
	val   []byte    // current value
	err   error
}

func (d *decoder) next() bool {
	if d.err != nil || len(d.buf) == 0 {
		return false
	}
	tag, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.tag = 0
		d.err = d.malformed("bad tag varint")
		return false
	}
	d.tag = tag
	size, m := binary.Uvarint(d.buf[n:])
	if m <= 0 {
		d.err = d.malformed("bad length varint")
		return false
	}
	n += m
	if size > uint64(len(d.buf)-n) {
		d.err = d.malformed(fmt.Sprintf("value of %d bytes runs past the end of the payload", size))
		return false
	}
	d.val = d.buf[n : n+int(size)]
	d.buf = d.buf[n+int(size):]
	return true
}

func (d *decoder) malformed(reason string) error {
	return fmt.Errorf("protocol: %v tag %d: %s: %w", d.typ, d.tag, reason, ErrMalformed)
}

func (d *decoder) fail(reason string) {
	if d.err == nil {
		d.err = d.malformed(reason)
	}
}

// uint reads an unsigned value that must fit in bits bits.
func (d *decoder) uint(bits int) uint64 {
	v, n := binary.Uvarint(d.val)
	if n <= 0 || n != len(d.val) {
		d.fail("bad unsigned value")
		return 0
	}
	if bits < 64 && v>>bits != 0 {
		d.fail(fmt.Sprintf("value %d overflows %d bits", v, bits))
		return 0
	}
	return v
}

func (d *decoder) uint64() uint64 { return d.uint(64) }

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.val)
	if n <= 0 || n != len(d.val) {
		d.fail("bad signed value")
		return 0
	}
	return v
}

func (d *decoder) bool() bool {
	if len(d.val) != 1 || d.val[0] > 1 {
		d.fail("bad bool value")
		return false
	}
	return d.val[0] == 1
}

func (d *decoder) string() string { return string(d.val) }

// bytes returns nil for an empty value, so a decoded message compares equal
// to one that never had the field.
func (d *decoder) bytes() []byte {
	if len(d.val) == 0 {
		return nil
	}
	if d.alias {
		return d.val[:len(d.val):len(d.val)]
	}
	return append([]byte(nil), d.val...)
}
