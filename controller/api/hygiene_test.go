package api

import (
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// TestHTTPHygiene sends what a smuggler or a sloppy client sends, on raw
// sockets: every one is refused with 400 and the connection closed, so a
// request hidden in a body is never served.
func TestHTTPHygiene(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t))
	addr := strings.TrimPrefix(e.base, "http://")
	auth := "Authorization: Bearer " + e.admin + "\r\n"
	hidden := "GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"content-length and chunked", "POST /v1/fn/_/nofn HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden},
		{"chunked and content-length", "POST /v1/fn/_/nofn HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + hidden},
		{"no host", "GET /v1 HTTP/1.1\r\n\r\n" + hidden},
		{"NUL in a header", "GET /v1 HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n" + hidden},
		{"obs-fold", "GET /v1 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + hidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, closed := testhttp.Raw(t, addr, tc.raw, time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 400") {
				t.Errorf("answer %q, want 400", firstLineOf(out))
			}
			if n := testhttp.StatusLines(out); n != 1 {
				t.Errorf("%d responses, want 1 (the hidden request was served): %q", n, out)
			}
			if !closed {
				t.Error("the connection stays open")
			}
		})
	}
	// A clean request on the same kind of connection is served, twice.
	out, _ := testhttp.Raw(t, addr, "GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n"+hidden, time.Second)
	if n := strings.Count(out, "HTTP/1.1 200"); n != 2 {
		t.Errorf("two clean pipelined requests: %d answers of 200: %q", n, out)
	}
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}
