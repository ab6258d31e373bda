// Package failover sends each REST request to one of several controllers
// of a cluster (issue 15: any number of controllers share one Postgres, and
// any of them serves any request) and moves to the next controller only
// when the failure proves that the request never reached the first one's
// handler, so that an invocation, which is not idempotent, never runs
// twice because of it. The wisp CLI and the cluster tests use it.
//
// # What moves a request to the next controller
//
// Every request, whatever its method:
//
//   - The connection could not be made: the dial failed (refused,
//     unreachable, no route, a name that does not resolve, a connect
//     timeout) or the TLS handshake broke on the network (reset, EOF,
//     timeout: a stopped server). No byte of the request was sent.
//   - The connection was made but no byte of the request was written to
//     it when it broke (the Transport counts the bytes written on each
//     connection it dials).
//   - The connection was a reused keep-alive connection that the server
//     had closed before the request was written on it. Just before
//     writing a request on a reused connection the Transport looks at the
//     socket without reading it (MSG_PEEK): an HTTP/1.1 server sends
//     nothing between an answer and the next request unless it is closing
//     the connection (its FIN, or a TLS close_notify), so anything waiting
//     there means the server closed first and the request is not written.
//     net/http's "server closed idle connection" is the same proof, found
//     by its own read.
//   - A request that is not idempotent and has a body is sent with
//     "Expect: 100-continue": its headers go first and its body only once
//     the controller says "100 Continue". When the connection breaks
//     before that, the body was not sent, and a controller acts on a
//     request only once it has read all of it (Wisp's controller reads
//     every body before its handler runs; so does any proxy in front of
//     it that buffers requests). This is what makes a keep-alive
//     connection closed by a draining controller just as the request was
//     sent on it provable: the close crosses the headers, not the body.
//     It costs one round trip per such request (the wait for the 100).
//   - The controller answered 503 Service Unavailable: a Wisp controller
//     answers 503 only when nothing ran (no agent could take the call, it
//     is starting or draining; docs/delivery.md), and another controller
//     may have the agent or not be draining. When every controller answers
//     503, the last 503 is the answer.
//
// Only idempotent requests (GET, HEAD, OPTIONS, or any request carrying an
// Idempotency-Key header) also move on when bytes of the request were
// written and the connection then broke before any byte of the answer.
// For other requests that failure is ambiguous: a controller killed while
// its handler ran, and a server's close that crossed the request on the
// wire (sent after the check above, before the request arrived), look the
// same from here: a close or a reset after the request, before the
// answer. It is returned as an *Error whose MayHaveRun says so, and not
// sent elsewhere. (Go's net/http is stricter still: it retries a
// non-idempotent request only when nothing of it was written.)
//
// Never moved on: a refused certificate (no CA vouches for it, or its key
// is not the pinned one; every controller of a cluster presents the same
// key, so a mismatch means something is wrong, not that a host is down),
// a context that ended, a timeout waiting for the answer, and any answer
// other than 503, errors included.
//
// # Order
//
// A Transport starts at a random controller, so that many clients spread
// over the cluster, and then keeps to the last one that answered; a
// request tries each controller at most once.
//
// It must never resend a request whose failure does not prove it unsent,
// unless the request is idempotent, and never read the body of a request
// it cannot rewind (Request.GetBody) more than once.
package failover

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Transport is an http.RoundTripper over the controllers of one cluster.
// A request's URL names the cluster by its first host (Hosts()[0]): its
// scheme, host and path prefix are replaced by those of the controller
// tried. It is safe for concurrent use.
type Transport struct {
	hosts []*url.URL
	base  *http.Transport
	next  atomic.Int64 // index of the controller to try first
}

var _ http.RoundTripper = (*Transport)(nil)

// New is a Transport over hosts (base URLs such as https://ctl-a:4000,
// optionally with a path prefix) that sends through a clone of base
// (http.DefaultTransport's settings when nil) whose connections it counts.
// base must not set DialTLSContext. It starts at a random host.
func New(hosts []string, base *http.Transport) (*Transport, error) {
	if len(hosts) == 0 {
		return nil, errors.New("failover: no controller address")
	}
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	if base.DialTLSContext != nil || base.DialTLS != nil { //nolint:staticcheck // DialTLS is deprecated, still honoured by net/http
		return nil, errors.New("failover: the base transport must not dial TLS itself")
	}
	dial := base.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t := &Transport{base: base.Clone()}
	t.base.DialContext = counting(dial)
	if t.base.ExpectContinueTimeout <= 0 {
		// The body waits at most this long for the 100 Continue, then
		// goes anyway (a server that ignores Expect).
		t.base.ExpectContinueTimeout = expectContinueTimeout
	}
	for _, h := range hosts {
		u, err := url.Parse(h)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("failover: %q is not an http(s) base URL", h)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath, u.RawQuery, u.Fragment = "", "", ""
		t.hosts = append(t.hosts, u)
	}
	t.next.Store(int64(rand.IntN(len(t.hosts))))
	return t, nil
}

// Hosts are the controllers' base URLs, in the order given.
func (t *Transport) Hosts() []string {
	out := make([]string, len(t.hosts))
	for i, u := range t.hosts {
		out[i] = u.String()
	}
	return out
}

// StartAt makes host i (modulo the number of hosts) the next one tried
// first; tests use it instead of the random start.
func (t *Transport) StartAt(i int) { t.next.Store(int64(i % len(t.hosts))) }

// hostKey is the context key under which each attempt records the base URL
// of the controller it was sent to (see Host).
type hostKey struct{}

// Host is the base URL of the controller that answered resp, when resp
// came through a Transport; else resp's scheme and host.
func Host(resp *http.Response) string {
	if resp == nil || resp.Request == nil {
		return ""
	}
	if h, ok := resp.Request.Context().Value(hostKey{}).(string); ok {
		return h
	}
	return resp.Request.URL.Scheme + "://" + resp.Request.URL.Host
}

// Attempt is one controller tried for a request and why it failed.
type Attempt struct {
	Host string // base URL
	Err  error
}

// Error is a request that no controller answered.
type Error struct {
	// Attempts are the controllers tried, in order; the last one's error
	// is why the request stopped there.
	Attempts []Attempt
	// MayHaveRun: the last controller tried may have received the request
	// (it was written and the connection broke before the answer), so it
	// was not sent to another.
	MayHaveRun bool
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.MayHaveRun {
		last := e.Attempts[len(e.Attempts)-1]
		fmt.Fprintf(&b, "the connection to the controller at %s failed after the request was sent and before any answer (%v); "+
			"it may have run there, so it was not sent to another controller", last.Host, last.Err)
		if len(e.Attempts) > 1 {
			b.WriteString("; before it: ")
			writeAttempts(&b, e.Attempts[:len(e.Attempts)-1])
		}
		return b.String()
	}
	if len(e.Attempts) == 1 {
		fmt.Fprintf(&b, "%s: %v", e.Attempts[0].Host, e.Attempts[0].Err)
		return b.String()
	}
	b.WriteString("no controller answered: ")
	writeAttempts(&b, e.Attempts)
	return b.String()
}

func writeAttempts(b *strings.Builder, as []Attempt) {
	for i, a := range as {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(b, "%s: %v", a.Host, a.Err)
	}
}

// Unwrap is the last attempt's error.
func (e *Error) Unwrap() error { return e.Attempts[len(e.Attempts)-1].Err }

// expectContinueTimeout is how long a body waits for "100 Continue".
const expectContinueTimeout = 2 * time.Second

// maxHeld bounds the body of a 503 kept while other controllers are tried.
const maxHeld = 64 << 10

// RoundTrip sends req to the controllers in turn (see the package doc).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := len(t.hosts)
	first := int(t.next.Load())
	hasBody := req.Body != nil && req.Body != http.NoBody
	var (
		attempts []Attempt
		held     *http.Response // the last 503, while others are tried
	)
	for i := range n {
		h := (first + i) % n
		if i > 0 && hasBody && req.GetBody == nil {
			break // the body is spent and cannot be read again
		}
		out, tr, err := t.prepare(req, h, i > 0)
		if err != nil {
			return nil, err
		}
		resp, err := t.base.RoundTrip(out)
		if err == nil {
			if resp.StatusCode == http.StatusServiceUnavailable && i < n-1 {
				if held != nil {
					held.Body.Close()
				}
				held = hold(resp)
				attempts = append(attempts, Attempt{t.hosts[h].String(), errors.New("503 Service Unavailable")})
				continue
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.next.Store(int64(h))
			}
			if held != nil {
				held.Body.Close()
			}
			return resp, nil
		}
		attempts = append(attempts, Attempt{t.hosts[h].String(), err})
		if req.Context().Err() != nil {
			if held != nil {
				held.Body.Close()
			}
			return nil, err
		}
		switch tr.verdict(req, err) {
		case unsent:
			continue
		case mayHaveRun:
			if held != nil {
				held.Body.Close()
			}
			return nil, &Error{Attempts: attempts, MayHaveRun: true}
		default: // final
			if held != nil {
				held.Body.Close()
			}
			return nil, &Error{Attempts: attempts}
		}
	}
	if held != nil {
		return held, nil
	}
	return nil, &Error{Attempts: attempts}
}

// prepare clones req for host h with a fresh body (when again) and a trace.
func (t *Transport) prepare(req *http.Request, h int, again bool) (*http.Request, *trace, error) {
	base := t.hosts[h]
	tr := &trace{}
	ctx := context.WithValue(req.Context(), hostKey{}, base.String())
	ctx = httptrace.WithClientTrace(ctx, tr.hooks())
	out := req.Clone(ctx)
	u := *req.URL
	u.Scheme, u.Host, u.User = base.Scheme, base.Host, base.User
	rel := strings.TrimPrefix(req.URL.Path, t.hosts[0].Path)
	u.Path = base.Path + rel
	if req.URL.RawPath != "" {
		u.RawPath = base.Path + strings.TrimPrefix(req.URL.RawPath, t.hosts[0].Path)
	}
	out.URL = &u
	out.Host = ""
	if req.Body != nil && req.Body != http.NoBody && !idempotent(req) && out.Header.Get("Expect") == "" {
		out.Header.Set("Expect", "100-continue")
		tr.expect = true
	}
	if again && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, nil, fmt.Errorf("failover: rewinding the request body: %w", err)
		}
		out.Body = body
	}
	return out, tr, nil
}

// hold reads a 503 answer into memory (at most maxHeld bytes of its body)
// so that its connection is free while other controllers are tried.
func hold(resp *http.Response) *http.Response {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxHeld))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp
}

// trace follows one attempt. net/http may retry on a new connection within
// an attempt (a reused connection found dead); each GetConn starts over, so
// the state is that of the connection whose error is returned.
type trace struct {
	gotConn, reused, wroteHeaders, wroteRequest, firstByte, got100 atomic.Bool
	// expect: the request was sent with "Expect: 100-continue".
	expect bool
	// headBytes is conn.written once the headers of an Expect request
	// were flushed (net/http then waits for the 100); -1 before.
	headBytes atomic.Int64
	conn      atomic.Pointer[conn]
	before    atomic.Int64 // conn.written at GotConn
}

// sent reports whether any byte of the request was written on the
// connection; known is false when the connection is not a counted one.
func (tr *trace) sent() (sent, known bool) {
	c := tr.conn.Load()
	if c == nil {
		return false, false
	}
	return c.written.Load() > tr.before.Load(), true
}

// bodyHeld reports whether an Expect request's headers were flushed and
// no byte was written after them (its body never left this process).
func (tr *trace) bodyHeld() bool {
	c, head := tr.conn.Load(), tr.headBytes.Load()
	return c != nil && head >= 0 && c.written.Load() == head
}

func (tr *trace) hooks() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) {
			tr.gotConn.Store(false)
			tr.reused.Store(false)
			tr.wroteHeaders.Store(false)
			tr.wroteRequest.Store(false)
			tr.firstByte.Store(false)
			tr.got100.Store(false)
			tr.headBytes.Store(-1)
			tr.conn.Store(nil)
		},
		GotConn: func(i httptrace.GotConnInfo) {
			tr.gotConn.Store(true)
			tr.reused.Store(i.Reused)
			if c := connOf(i.Conn); c != nil {
				tr.before.Store(c.written.Load())
				tr.conn.Store(c)
				// Look for the server's close before writing on a
				// connection it may have closed while idle.
				c.checkNext.Store(i.Reused)
			}
		},
		WroteHeaders: func() { tr.wroteHeaders.Store(true) },
		// net/http calls WroteRequest also when it gave up on the body
		// (no 100 Continue): bodyHeld says whether the body went.
		WroteRequest:         func(i httptrace.WroteRequestInfo) { tr.wroteRequest.Store(i.Err == nil) },
		GotFirstResponseByte: func() { tr.firstByte.Store(true) },
		Got100Continue:       func() { tr.got100.Store(true) },
		Wait100Continue: func() {
			if c := tr.conn.Load(); c != nil {
				tr.headBytes.Store(c.written.Load())
			}
		},
	}
}

type verdict int

const (
	final      verdict = iota // not sent elsewhere: the answer stands
	unsent                    // proven unsent: try the next controller
	mayHaveRun                // sent and unanswered: not sent elsewhere
)

// errServerClosedIdle is net/http's text for a reused connection whose
// close by the server it saw before writing the request (unexported there).
const errServerClosedIdle = "http: server closed idle connection"

// verdict classifies err, the failure of req's attempt traced by tr.
func (tr *trace) verdict(req *http.Request, err error) verdict {
	if trustRefused(err) || !brokenConnection(err) {
		return final
	}
	sent, known := tr.sent()
	switch {
	case !tr.gotConn.Load(), !tr.wroteHeaders.Load(), known && !sent:
		return unsent
	case tr.expect && !tr.got100.Load() && tr.bodyHeld():
		return unsent // no 100 Continue came: the body was held back
	case tr.firstByte.Load() && !tr.got100.Load():
		return final // the server answered something
	case tr.reused.Load() && strings.Contains(err.Error(), errServerClosedIdle):
		return unsent
	case idempotent(req):
		return unsent
	}
	return mayHaveRun
}

// idempotent: sending req twice does what sending it once does.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// trustRefused: the server's certificate was refused (no CA vouches for
// it, the name does not match, or a VerifyConnection such as a key pin said
// no) or the server refused the handshake with an alert.
func trustRefused(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var alert tls.AlertError
	var rh tls.RecordHeaderError
	var op *net.OpError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) ||
		errors.As(err, &alert) || errors.As(err, &rh) ||
		(errors.As(err, &op) && op.Op == "remote error") // a TLS alert from the server
}

// brokenConnection: err is the network failing (a dial, a reset, an end
// of stream, a timeout), not a refusal or a malformed exchange. A key pin
// that fails (a plain error from VerifyConnection) is not one.
func brokenConnection(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errServerClosing) ||
		strings.Contains(err.Error(), errServerClosedIdle) {
		return true
	}
	var errno syscall.Errno
	var dns *net.DNSError
	var op *net.OpError
	var ne net.Error
	return errors.As(err, &errno) || errors.As(err, &dns) || errors.As(err, &op) || (errors.As(err, &ne) && ne.Timeout())
}
