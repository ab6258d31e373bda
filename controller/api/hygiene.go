package api

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
)

// checkFraming refuses, with 400 and the connection closed, what RFC 9112
// says a server must not guess at: a request that says its length twice
// (Content-Length and Transfer-Encoding, the request-smuggling vector:
// fasthttp would read it as chunked and serve what follows as the next
// request), an HTTP/1.1 request without Host, and header fields with a NUL
// or folded over lines (obs-fold).
func checkFraming(c *fiber.Ctx) error {
	h := &c.Request().Header
	if reason := framingProblem(h.RawHeaders(), h.IsHTTP11(), len(h.Host()) > 0); reason != "" {
		c.Context().SetConnectionClose()
		return fail(ErrBadRequest, "Malformed request: %s", reason)
	}
	return c.Next()
}

// framingProblem says what is wrong with a request's raw header block
// (field lines as received, each ending in CRLF or LF), or "".
func framingProblem(raw []byte, http11, hasHost bool) string {
	if bytes.IndexByte(raw, 0) >= 0 {
		return "a header field holds a NUL byte"
	}
	var length, chunked bool
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "a header field is folded over lines (obs-fold)"
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = true
		}
	}
	if length && chunked {
		return "both Content-Length and Transfer-Encoding are set"
	}
	if http11 && !hasHost {
		return "an HTTP/1.1 request needs a Host header"
	}
	return ""
}
