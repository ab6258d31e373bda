package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

// readers wraps a byte slice in the kinds of reader ReadFrame meets: one with
// io.ByteReader and ones without, some returning short reads.
var readers = map[string]func([]byte) io.Reader{
	"bytes.Reader": func(b []byte) io.Reader { return bytes.NewReader(b) },
	"bufio":        func(b []byte) io.Reader { return bufio.NewReader(plainReader{bytes.NewReader(b)}) },
	"plain":        func(b []byte) io.Reader { return plainReader{bytes.NewReader(b)} },
	"one byte":     func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
	"half":         func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	"data+EOF":     func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
}

// plainReader hides every method but Read.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func TestStream(t *testing.T) {
	// A control stream: frames, an optional frame from the future among
	// them, then a clean end.
	var stream bytes.Buffer
	msgs := goldenMsgs()
	for i, m := range msgs {
		if err := WriteMsg(&stream, m); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := WriteFrame(&stream, Frame{Type: 0x40, Payload: []byte("hint")}); err != nil {
				t.Fatal(err)
			}
			if err := WriteMsg(&stream, &Unknown{FrameType: 0x7f}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			r := wrap(stream.Bytes())
			var got []Message
			var skipped []Unknown
			for {
				m, err := ReadMsg(r, 0)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d messages: %v", len(got), err)
				}
				if u, ok := m.(*Unknown); ok {
					skipped = append(skipped, *u)
					continue
				}
				got = append(got, m)
			}
			if !reflect.DeepEqual(got, msgs) {
				t.Fatalf("messages differ:\n got %#v\nwant %#v", got, msgs)
			}
			want := []Unknown{{FrameType: 0x40, Payload: []byte("hint")}, {FrameType: 0x7f}}
			if !reflect.DeepEqual(skipped, want) {
				t.Fatalf("skipped %#v, want %#v", skipped, want)
			}
		})
	}
}

func TestUnknownTypes(t *testing.T) {
	for _, typ := range []FrameType{0x00, 0x0f, 0x14, 0x1f, 0x3f, 0x80, 0xff} {
		var b bytes.Buffer
		if err := WriteFrame(&b, Frame{Type: typ, Payload: []byte{1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadMsg(&b, 0); !errors.Is(err, ErrUnknownType) {
			t.Errorf("type 0x%02x: err = %v, want ErrUnknownType", uint8(typ), err)
		}
	}
	for typ := FrameType(0x40); typ <= 0x7f; typ++ {
		m, err := Decode(Frame{Type: typ, Payload: []byte{0xff}})
		if u, ok := m.(*Unknown); err != nil || !ok || u.FrameType != typ {
			t.Fatalf("type 0x%02x: got %#v, %v; want it skipped as *Unknown", uint8(typ), m, err)
		}
	}
}

func TestTruncated(t *testing.T) {
	frame := unhex(t, golden[3]) // Error
	for name, wrap := range readers {
		for n := 1; n < len(frame); n++ {
			_, err := ReadFrame(wrap(frame[:n]), 0)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s: %d of %d bytes: err = %v, want io.ErrUnexpectedEOF", name, n, len(frame), err)
			}
		}
		if _, err := ReadFrame(wrap(nil), 0); err != io.EOF {
			t.Fatalf("%s: empty stream: err = %v, want io.EOF itself", name, err)
		}
	}
}

func TestEmptyPayload(t *testing.T) {
	f, err := ReadFrame(bytes.NewReader([]byte{0x09, 0, 0, 0, 0}), 0)
	if err != nil || f.Type != TypeAck || f.Payload != nil {
		t.Fatalf("got %#v, %v", f, err)
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("boom")
	frame := unhex(t, golden[3])
	r := io.MultiReader(bytes.NewReader(frame[:7]), iotest.ErrReader(boom))
	if _, err := ReadFrame(r, 0); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the reader's", err)
	}
}

func TestFrameTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		declare uint32
		max     uint32
		wantMax uint32
	}{
		{"over a small limit", 1025, 1024, 1024},
		{"over MaxFrameSize", MaxFrameSize + 1, 0, MaxFrameSize},
		{"limit above MaxFrameSize is clamped", MaxFrameSize + 1, 1 << 31, MaxFrameSize},
		{"4 GiB", 1<<32 - 1, 0, MaxFrameSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := appendHeader(nil, TypeCode, int(tt.declare))
			// Nothing follows the header: the refusal must come from it
			// alone, without reading or allocating the payload.
			_, err := ReadFrame(bytes.NewReader(hdr), tt.max)
			var tl *FrameTooLargeError
			if !errors.As(err, &tl) || !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("err = %v, want *FrameTooLargeError", err)
			}
			if tl.Size != uint64(tt.declare) || tl.Max != tt.wantMax || tl.Type != TypeCode {
				t.Fatalf("got %+v", tl)
			}
			allocs := testing.AllocsPerRun(100, func() {
				ReadFrame(bytes.NewReader(hdr), tt.max)
			})
			if allocs > 2 { // the bytes.Reader and the error
				t.Fatalf("%v allocations refusing a frame", allocs)
			}
		})
	}
	// At the limit is fine.
	if _, err := ReadFrame(bytes.NewReader(append(appendHeader(nil, TypeAck, 3), 1, 3, 'x')), 3); err != nil {
		t.Fatal(err)
	}
}

// TestDeclaredButNotSent: a frame that declares nearly 64 MiB and then
// stops costs the reader memory in proportion to what arrived, not to what
// was declared.
func TestDeclaredButNotSent(t *testing.T) {
	hdr := appendHeader(nil, TypeCode, MaxFrameSize)
	r := io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(make([]byte, 100)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := ReadFrame(r, 0)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("allocated %d bytes for a frame that sent 100", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestLargeFrame(t *testing.T) {
	// Over readChunk, so the payload grows as it arrives.
	wasm := bytes.Repeat([]byte("0123456789abcdef"), (3*readChunk+5)/16)
	var b bytes.Buffer
	if err := WriteMsg(&b, &Code{Digest: "d", Wasm: wasm}); err != nil {
		t.Fatal(err)
	}
	for name, wrap := range readers {
		m, err := ReadMsg(wrap(b.Bytes()), 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c := m.(*Code); c.Digest != "d" || !bytes.Equal(c.Wasm, wasm) {
			t.Fatalf("%s: payload corrupted", name)
		}
	}
	// WriteMsg writes the same bytes as AppendMsg, in two writes.
	var w countingWriter
	if err := WriteMsg(&w, &Code{Digest: "d", Wasm: wasm}); err != nil || w.writes != 2 || w.n != b.Len() {
		t.Fatalf("WriteMsg(Code): %d writes of %d bytes (want 2 of %d), %v", w.writes, w.n, b.Len(), err)
	}
	if app, _ := AppendMsg(nil, &Code{Digest: "d", Wasm: wasm}); !bytes.Equal(app, b.Bytes()) {
		t.Fatal("WriteMsg(Code) and AppendMsg disagree")
	}
	// WriteFrame writes a large payload without copying, in two writes.
	w = countingWriter{}
	if err := WriteFrame(&w, Frame{Type: TypeCode, Payload: wasm}); err != nil {
		t.Fatal(err)
	}
	if w.writes != 2 || w.n != frameHeaderLen+len(wasm) {
		t.Fatalf("%d writes of %d bytes", w.writes, w.n)
	}
	w = countingWriter{}
	if err := WriteFrame(&w, Frame{Type: TypeAck, Payload: []byte{1, 1, 'x'}}); err != nil || w.writes != 1 {
		t.Fatalf("small frame: %d writes, %v", w.writes, err)
	}
}

type countingWriter struct{ writes, n int }

func (c *countingWriter) Write(b []byte) (int, error) { c.writes++; c.n += len(b); return len(b), nil }

func TestWriteTooLarge(t *testing.T) {
	big := make([]byte, MaxFrameSize+1)
	var w countingWriter
	if err := WriteFrame(&w, Frame{Type: TypeCode, Payload: big}); !errors.Is(err, ErrFrameTooLarge) || w.writes != 0 {
		t.Fatalf("WriteFrame: err %v, %d writes", err, w.writes)
	}
	if err := WriteMsg(&w, &Code{Wasm: big}); !errors.Is(err, ErrFrameTooLarge) || w.writes != 0 {
		t.Fatalf("WriteMsg: err %v, %d writes", err, w.writes)
	}
	dst := []byte("keep")
	got, err := AppendMsg(dst, &Code{Wasm: big})
	if !errors.Is(err, ErrFrameTooLarge) || string(got) != "keep" {
		t.Fatalf("AppendMsg: err %v, dst %q", err, got[:min(len(got), 8)])
	}
}

func TestReadFrameIntoReuses(t *testing.T) {
	var stream []byte
	for range 10 {
		stream, _ = AppendMsg(stream, goldenMsgs()[1])
	}
	for _, name := range []string{"bytes.Reader", "plain"} {
		buf := make([]byte, 0, 256)
		allocs := testing.AllocsPerRun(20, func() {
			r := readers[name](stream)
			for {
				f, err := ReadFrameInto(r, buf, 0)
				if err == io.EOF {
					break
				}
				if err != nil || f.Type != TypeInvoke || &f.Payload[0] != &buf[:1][0] {
					t.Fatalf("%s: %v, payload not in buf", name, err)
				}
			}
		})
		if allocs > 2 { // the reader wrappers
			t.Fatalf("%s: %v allocations for 10 frames", name, allocs)
		}
	}
}

func TestFrameTypeString(t *testing.T) {
	if s := TypeNeedCode.String(); s != "NeedCode" {
		t.Fatal(s)
	}
	if s := FrameType(0x41).String(); s != "FrameType(0x41)" {
		t.Fatal(s)
	}
	if s := CloseSuperseded.String(); s != "superseded" {
		t.Fatal(s)
	}
}
