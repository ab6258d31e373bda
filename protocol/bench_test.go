package protocol

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

func benchInvoke() *Invoke {
	return &Invoke{
		ActivationID: "01JDQ7Z3XKQ8V4M2N6P0R5S9TB", Module: "shop", Function: "checkout",
		Digest:         "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Args:           []byte(`{"cart":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"user":"u-42"}`),
		DeadlineUnixMS: 1764028800000, AllowedHosts: []string{"api.example.com"}, TimeoutMS: 5000,
	}
}

func benchResult() *Result {
	return &Result{
		ActivationID: "01JDQ7Z3XKQ8V4M2N6P0R5S9TB", Output: []byte(`{"total":31.5,"currency":"EUR","items":3}`),
		Logs: []LogLine{{UnixUS: 1764028800123456, Text: "priced cart"}}, QueueUS: 40, TransferUS: 0, InstantiateUS: 35, RunUS: 180,
		DiskCacheHit: true,
	}
}

// BenchmarkEncode measures AppendMsg into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	for _, m := range []Message{benchInvoke(), benchResult()} {
		b.Run(m.Type().String(), func(b *testing.B) {
			buf, _ := AppendMsg(nil, m)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendMsg(buf[:0], m)
			}
		})
	}
}

// BenchmarkDecode measures ReadMsg from a bufio.Reader, as on a stream.
func BenchmarkDecode(b *testing.B) {
	for _, m := range []Message{benchInvoke(), benchResult()} {
		b.Run(m.Type().String(), func(b *testing.B) {
			frame, _ := AppendMsg(nil, m)
			b.SetBytes(int64(len(frame)))
			src := bytes.NewReader(frame)
			br := bufio.NewReader(src)
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(frame)
				br.Reset(src)
				if _, err := ReadMsg(br, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTrip is WriteMsg then ReadMsg, the work of one message on an
// invocation stream.
func BenchmarkRoundTrip(b *testing.B) {
	for _, m := range []Message{benchInvoke(), benchResult()} {
		b.Run(m.Type().String(), func(b *testing.B) {
			var stream bytes.Buffer
			br := bufio.NewReader(&stream)
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteMsg(&stream, m); err != nil {
					b.Fatal(err)
				}
				if _, err := ReadMsg(br, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadFrameInto is the framing alone, with a reused buffer.
func BenchmarkReadFrameInto(b *testing.B) {
	frame, _ := AppendMsg(nil, benchInvoke())
	src := bytes.NewReader(frame)
	br := bufio.NewReader(src)
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(frame)
		br.Reset(src)
		if _, err := ReadFrameInto(br, buf, 0); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}
