package localapi

import (
	"bytes"
	"net"
	"strconv"
	"sync"
)

// framingListener hands net/http connections that refuse, before the
// server sees them, the requests RFC 9112 says a server must not guess at:
// a request with Transfer-Encoding (with Content-Length too it is the
// request-smuggling vector; net/http would drop the Content-Length and read
// on), and header fields folded over lines (obs-fold, which net/http
// unfolds). The local API's clients send small JSON bodies with
// Content-Length, so any Transfer-Encoding is refused. Such a request
// reaches the server as a malformed request line instead, which net/http
// answers with 400 and a closed connection; nothing after it on the
// connection is read. (net/http itself refuses a missing Host and NUL in
// header fields.)
type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// maxHeaderBlock bounds the header block the framing check holds; net/http
// refuses larger ones anyway (MaxHeaderBytes).
const maxHeaderBlock = 64 << 10

// refusal is what a refused request becomes: a request line net/http
// cannot parse.
var refusal = []byte("REFUSED\r\n\r\n")

// framingConn follows the requests on one connection: their header blocks,
// then as many body bytes as their Content-Length says.
type framingConn struct {
	net.Conn
	mu      sync.Mutex
	head    []byte // the current request's header bytes so far
	body    int64  // body bytes still to pass through
	pending []byte // checked bytes not yet handed to the server
	refused bool
}

func (c *framingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) == 0 {
		if c.refused {
			return 0, net.ErrClosed
		}
		buf := make([]byte, len(p))
		n, err := c.Conn.Read(buf)
		c.feed(buf[:n])
		if len(c.pending) == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// feed follows b through the framing and appends what may go to the
// server to pending.
func (c *framingConn) feed(b []byte) {
	for len(b) > 0 && !c.refused {
		if c.body > 0 {
			n := int64(len(b))
			if n > c.body {
				n = c.body
			}
			c.pending = append(c.pending, b[:n]...)
			c.body -= n
			b = b[n:]
			continue
		}
		c.head = append(c.head, b...)
		b = nil
		end := bytes.Index(c.head, []byte("\r\n\r\n"))
		if end < 0 {
			if len(c.head) > maxHeaderBlock {
				c.refuse()
			}
			return
		}
		block, rest := c.head[:end+4], c.head[end+4:]
		length, ok := checkHead(block)
		if !ok {
			c.refuse()
			return
		}
		c.pending = append(c.pending, block...)
		c.body = length
		b = rest
		c.head = nil
	}
}

func (c *framingConn) refuse() {
	c.refused = true
	c.head = nil
	c.pending = append(c.pending, refusal...)
}

// checkHead reads a request's header block (request line, fields, the
// blank line) and returns its body length, or false when it is refused.
// Leading blank lines before a request line are allowed, as RFC 9112 says.
func checkHead(block []byte) (int64, bool) {
	lines := bytes.Split(bytes.TrimRight(block, "\r\n"), []byte("\r\n"))
	for len(lines) > 0 && len(lines[0]) == 0 {
		lines = lines[1:]
	}
	if len(lines) == 0 {
		return 0, true
	}
	var length int64
	seenLength := false
	for _, line := range lines[1:] {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return 0, false // obs-fold
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Transfer-Encoding")):
			return 0, false
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")):
			n, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
			if err != nil || n < 0 || (seenLength && n != length) {
				return 0, false
			}
			length, seenLength = n, true
		}
	}
	return length, true
}
