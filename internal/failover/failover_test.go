package failover

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/keypin"
)

// backend is a real HTTP server that counts the requests its handler saw
// and answers with its name.
type backend struct {
	*httptest.Server
	name  string
	hits  atomic.Int64
	bodys chan string
}

func newBackend(t *testing.T, name string, status int) *backend {
	return newBackendTLS(t, name, status, false)
}

// newBackendTLS is newBackend serving TLS (httptest's certificate, the
// same for every such server) when useTLS.
func newBackendTLS(t *testing.T, name string, status int, useTLS bool) *backend {
	t.Helper()
	b := &backend{name: name, bodys: make(chan string, 1000)}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// The body never came whole (its connection closed before
			// the 100 Continue was answered): nothing ran, as in the
			// controller, whose server reads the whole body before any
			// handler runs.
			return
		}
		b.hits.Add(1)
		b.bodys <- r.Method + " " + r.URL.Path + " " + string(body)
		w.WriteHeader(status)
		io.WriteString(w, name)
	}))
	if useTLS {
		b.StartTLS()
	} else {
		b.Start()
	}
	t.Cleanup(b.Close)
	return b
}

// deadURL is an address where nothing listens (a stopped server).
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func newTransport(t *testing.T, base *http.Transport, hosts ...string) (*Transport, *http.Client) {
	t.Helper()
	if base == nil {
		base = &http.Transport{}
	}
	tr, err := New(hosts, base)
	if err != nil {
		t.Fatal(err)
	}
	tr.StartAt(0)
	return tr, &http.Client{Transport: tr}
}

// post sends a POST with body to the cluster named by its first host.
func post(t *testing.T, c *http.Client, first, path, body string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequest("POST", first+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return send(c, req)
}

func send(c *http.Client, req *http.Request) (*http.Response, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestDialFailureMovesOnAndSticks(t *testing.T) {
	b := newBackend(t, "b", 200)
	dead := deadURL(t)
	tr, c := newTransport(t, nil, dead, b.URL)
	resp, body, err := post(t, c, dead, "/v1/fn/_/hello", `{"args":{}}`)
	if err != nil || resp.StatusCode != 200 || body != "b" {
		t.Fatalf("POST through a dead first host: %v %v %q", resp, err, body)
	}
	if got := <-b.bodys; got != `POST /v1/fn/_/hello {"args":{}}` {
		t.Fatalf("b received %q", got)
	}
	if h := Host(resp); h != b.URL {
		t.Fatalf("Host(resp) = %q, want %q", h, b.URL)
	}
	if tr.next.Load() != 1 {
		t.Fatalf("next = %d, want the host that answered (1)", tr.next.Load())
	}
	// The next request starts at b: the dead host is not dialled again.
	for range 3 {
		if _, body, err := post(t, c, dead, "/x", "y"); err != nil || body != "b" {
			t.Fatalf("%q %v", body, err)
		}
	}
	if b.hits.Load() != 4 {
		t.Fatalf("b saw %d requests, want 4", b.hits.Load())
	}
}

func TestPathPrefixes(t *testing.T) {
	b := newBackend(t, "b", 200)
	dead := deadURL(t)
	_, c := newTransport(t, nil, dead+"/wisp", b.URL+"/other/")
	if _, _, err := post(t, c, dead+"/wisp", "/v1/fn?x=1", "z"); err != nil {
		t.Fatal(err)
	}
	if got := <-b.bodys; got != "POST /other/v1/fn z" {
		t.Fatalf("b received %q", got)
	}
}

func TestEveryHostDown(t *testing.T) {
	d1, d2 := deadURL(t), deadURL(t)
	_, c := newTransport(t, nil, d1, d2)
	_, _, err := post(t, c, d1, "/v1/fn/_/f", "{}")
	var fe *Error
	if !errors.As(err, &fe) || len(fe.Attempts) != 2 || fe.MayHaveRun {
		t.Fatalf("want an *Error with two attempts, got %#v", err)
	}
	if !strings.Contains(err.Error(), "no controller answered: "+d1) || !strings.Contains(err.Error(), d2) ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error text: %v", err)
	}
}

// TestServerShutDownBetweenRequests: a keep-alive connection of a server
// that shuts down (closes its listener and idle connections, as a
// draining controller does) between two requests; the second, an
// invocation, reaches the other server exactly once, whichever way the
// close races with it, over plain HTTP and over TLS (where the close
// comes as a close_notify before the FIN). Repeated to meet the races.
func TestServerShutDownBetweenRequests(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "tls"}[useTLS], func(t *testing.T) {
			for i := range 30 {
				a := newBackendTLS(t, "a", 200, useTLS)
				b := newBackendTLS(t, "b", 200, useTLS)
				base := &http.Transport{}
				if useTLS {
					base.TLSClientConfig = keypin.ClientConfig(keypin.Of(a.Certificate()))
				}
				_, c := newTransport(t, base, a.URL, b.URL)
				if _, body, err := post(t, c, a.URL, "/one", "1"); err != nil || body != "a" {
					t.Fatalf("first request: %q %v", body, err)
				}
				a.Close() // listener and idle connections closed
				if i%2 == 0 {
					time.Sleep(time.Millisecond) // let the client see the close
				}
				if _, body, err := post(t, c, a.URL, "/two", "2"); err != nil || body != "b" {
					t.Fatalf("round %d: second request: %q %v", i, body, err)
				}
				if a.hits.Load() != 1 || b.hits.Load() != 1 {
					t.Fatalf("round %d: a saw %d, b %d; want 1 and 1", i, a.hits.Load(), b.hits.Load())
				}
			}
		})
	}
}

// rawServer reads one whole request per connection (answering "100
// Continue" first when asked, as a real server does), records it, then
// does what kill says: "close" drops the connection without an answer (a
// controller killed while its handler ran), "reset" the same with a TCP
// reset, "handshake" closes before any byte (a TLS server stopping),
// "headers" reads the headers only and closes with a reset (a draining
// server closing a keep-alive connection as the request arrives).
type rawServer struct {
	ln   net.Listener
	seen atomic.Int64
}

func newRawServer(t *testing.T, kill string) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if kill == "handshake" {
					return
				}
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				if kill == "headers" {
					conn.(*net.TCPConn).SetLinger(0)
					return
				}
				if req.Header.Get("Expect") == "100-continue" {
					io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
				}
				io.Copy(io.Discard, req.Body)
				s.seen.Add(1)
				if kill == "reset" {
					conn.(*net.TCPConn).SetLinger(0)
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

func TestKilledWhileHandling(t *testing.T) {
	for _, kill := range []string{"close", "reset"} {
		t.Run(kill, func(t *testing.T) {
			a := newRawServer(t, kill)
			b := newBackend(t, "b", 200)
			_, c := newTransport(t, nil, a.url(), b.URL)
			// An invocation is not idempotent: it may have run on a, so
			// it is not sent to b.
			_, _, err := post(t, c, a.url(), "/v1/fn/_/f", "{}")
			var fe *Error
			if !errors.As(err, &fe) || !fe.MayHaveRun || len(fe.Attempts) != 1 {
				t.Fatalf("POST to a server killed while handling: want MayHaveRun, got %#v", err)
			}
			if !strings.Contains(err.Error(), "may have run there") {
				t.Fatalf("error text: %v", err)
			}
			if a.seen.Load() != 1 || b.hits.Load() != 0 {
				t.Fatalf("a saw %d, b %d; want 1 and 0", a.seen.Load(), b.hits.Load())
			}
			// A GET, or a request with an Idempotency-Key, may run twice.
			req, _ := http.NewRequest("GET", a.url()+"/v1/fn", nil)
			if _, body, err := send(c, req); err != nil || body != "b" {
				t.Fatalf("GET: %q %v", body, err)
			}
			req, _ = http.NewRequest("POST", a.url()+"/v1/fn/_/f", strings.NewReader("{}"))
			req.Header.Set("Idempotency-Key", "k1")
			// The GET made b the first host; start at a again.
			c.Transport.(*Transport).StartAt(0)
			if _, body, err := send(c, req); err != nil || body != "b" {
				t.Fatalf("POST with Idempotency-Key: %q %v", body, err)
			}
			if b.hits.Load() != 2 {
				t.Fatalf("b saw %d requests, want 2", b.hits.Load())
			}
		})
	}
}

// TestClosedBeforeTheBody: an invocation goes with "Expect: 100-continue";
// a server that closes the connection after its headers, before saying
// 100 Continue, never had the body: the invocation goes to the next
// server, whole, once.
func TestClosedBeforeTheBody(t *testing.T) {
	a := newRawServer(t, "headers")
	b := newBackend(t, "b", 200)
	_, c := newTransport(t, nil, a.url(), b.URL)
	if _, body, err := post(t, c, a.url(), "/v1/fn/_/f", `{"args":{"n":1}}`); err != nil || body != "b" {
		t.Fatalf("POST: %q %v", body, err)
	}
	if got := <-b.bodys; got != `POST /v1/fn/_/f {"args":{"n":1}}` || b.hits.Load() != 1 {
		t.Fatalf("b received %q (%d requests)", got, b.hits.Load())
	}
	// A GET has no body to hold back and is idempotent anyway; a PUT with
	// an Idempotency-Key is sent without Expect.
	req, _ := http.NewRequest("PUT", a.url()+"/x", strings.NewReader("y"))
	req.Header.Set("Idempotency-Key", "k")
	c.Transport.(*Transport).StartAt(0)
	if _, body, err := send(c, req); err != nil || body != "b" {
		t.Fatalf("PUT: %q %v", body, err)
	}
}

func TestHandshakeBrokenByStoppingServer(t *testing.T) {
	a := newRawServer(t, "handshake")
	b := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	pin := keypin.Of(b.Certificate())
	base := &http.Transport{TLSClientConfig: keypin.ClientConfig(pin)}
	aURL := "https://" + a.ln.Addr().String()
	_, c := newTransport(t, base, aURL, b.URL)
	if _, body, err := post(t, c, aURL, "/v1/fn/_/f", "{}"); err != nil || body != "b" {
		t.Fatalf("POST: %q %v", body, err)
	}
}

// TestPinMismatchStops: a controller presenting another key is refused, and
// the request is not sent to the next one: a cluster shares one key, so a
// mismatch is a fault to see, not a host to skip.
func TestPinMismatchStops(t *testing.T) {
	a := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	// httptest servers share one certificate; pin another key.
	pin := keypin.Of(selfSigned(t))
	base := &http.Transport{TLSClientConfig: keypin.ClientConfig(pin)}
	_, c := newTransport(t, base, a.URL, b.URL)
	_, _, err := post(t, c, a.URL, "/x", "y")
	if !errors.Is(err, keypin.ErrMismatch) {
		t.Fatalf("want the pin mismatch, got %v", err)
	}
	var fe *Error
	if !errors.As(err, &fe) || len(fe.Attempts) != 1 {
		t.Fatalf("want one attempt, got %#v", err)
	}
	// Without a pin and no CA: refused as well, not skipped.
	_, c = newTransport(t, &http.Transport{}, a.URL, b.URL)
	if _, _, err := post(t, c, a.URL, "/x", "y"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate error, got %v", err)
	} else if errors.As(err, &fe); len(fe.Attempts) != 1 {
		t.Fatalf("want one attempt, got %v", err)
	}
}

// selfSigned is a certificate of a fresh key.
func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestUnavailableMovesOn(t *testing.T) {
	a := newBackend(t, "draining", 503)
	b := newBackend(t, "b", 200)
	tr, c := newTransport(t, nil, a.URL, b.URL)
	resp, body, err := post(t, c, a.URL, "/v1/fn/_/f", `{"n":1}`)
	if err != nil || resp.StatusCode != 200 || body != "b" {
		t.Fatalf("%v %q %v", resp, body, err)
	}
	if <-a.bodys != `POST /v1/fn/_/f {"n":1}` || <-b.bodys != `POST /v1/fn/_/f {"n":1}` {
		t.Fatal("the body was not sent whole to both")
	}
	if tr.next.Load() != 1 {
		t.Fatal("a 200 from b should make it the first host")
	}
	// Every host 503: the last 503 is the answer, with its body.
	c2 := newBackend(t, "also draining", 503)
	tr, c = newTransport(t, nil, a.URL, c2.URL)
	resp, body, err = post(t, c, a.URL, "/v1/fn/_/f", `{}`)
	if err != nil || resp.StatusCode != 503 || body != "also draining" || Host(resp) != c2.URL {
		t.Fatalf("%v %q %v", resp, body, err)
	}
	// A 503 then a dead host: the 503 is the answer.
	dead := deadURL(t)
	_, c = newTransport(t, nil, a.URL, dead)
	resp, body, err = post(t, c, a.URL, "/v1/fn/_/f", `{}`)
	if err != nil || resp.StatusCode != 503 || body != "draining" {
		t.Fatalf("%v %q %v", resp, body, err)
	}
	// Other errors are answers.
	e := newBackend(t, "bad", 502)
	_, c = newTransport(t, nil, e.URL, b.URL)
	if resp, _, err := post(t, c, e.URL, "/x", "y"); err != nil || resp.StatusCode != 502 {
		t.Fatalf("502 should be the answer: %v %v", resp, err)
	}
}

// TestBodyThatCannotRewind: a body without GetBody is sent to one host at
// most; the failure is returned.
func TestBodyThatCannotRewind(t *testing.T) {
	b := newBackend(t, "b", 200)
	dead := deadURL(t)
	_, c := newTransport(t, nil, dead, b.URL)
	req, _ := http.NewRequest("POST", dead+"/x", io.MultiReader(strings.NewReader("once")))
	req.ContentLength = 4
	if _, _, err := send(c, req); err == nil {
		t.Fatal("want an error")
	}
	if b.hits.Load() != 0 {
		t.Fatal("b received a body that could not be rewound")
	}
}

func TestVerdicts(t *testing.T) {
	post, _ := http.NewRequest("POST", "http://x/v1/fn/_/f", nil)
	get, _ := http.NewRequest("GET", "http://x/v1/fn", nil)
	closedIdle := errors.New("http: server closed idle connection")
	postExpect, postExpect100 := post, post // marked below by name
	eof := io.EOF
	refusal := errors.New("the server's key fingerprint is not the pinned one")
	for _, tt := range []struct {
		name                                       string
		req                                        *http.Request
		gotConn, reused, headers, wrote, firstByte bool
		err                                        error
		want                                       verdict
	}{
		{"dial refused", post, false, false, false, false, false, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, unsent},
		{"pin refused", post, false, false, false, false, false, refusal, final},
		{"nothing written", post, true, true, false, false, false, eof, unsent},
		{"server closed idle connection", post, true, true, true, true, false, closedIdle, unsent},
		{"closed idle on a fresh connection", post, true, false, true, true, false, closedIdle, mayHaveRun},
		{"EOF after a POST", post, true, true, true, true, false, eof, mayHaveRun},
		{"EOF after a POST's headers", post, true, false, true, false, false, eof, mayHaveRun},
		{"EOF before 100 Continue", postExpect, true, true, true, false, false, eof, unsent},
		{"EOF after 100 Continue", postExpect100, true, true, true, false, true, eof, mayHaveRun},
		{"EOF after an Expect body went anyway", postExpect, true, true, true, true, false, eof, mayHaveRun},
		{"EOF after a GET", get, true, true, true, true, false, eof, unsent},
		{"broken answer", get, true, true, true, true, true, io.ErrUnexpectedEOF, final},
		{"canceled", get, false, false, false, false, false, context.Canceled, final},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &trace{expect: strings.Contains(tt.name, "100 Continue") || strings.Contains(tt.name, "Expect")}
			tr.got100.Store(strings.Contains(tt.name, "after 100 Continue"))
			tr.headBytes.Store(-1)
			if tr.expect {
				// Headers flushed (10 bytes); the body (10 more) only
				// when it "went anyway".
				c := &conn{}
				c.written.Store(10)
				if strings.Contains(tt.name, "went anyway") {
					c.written.Store(20)
				}
				tr.conn.Store(c)
				tr.headBytes.Store(10)
			}
			tr.gotConn.Store(tt.gotConn)
			tr.reused.Store(tt.reused)
			tr.wroteHeaders.Store(tt.headers)
			tr.wroteRequest.Store(tt.wrote)
			tr.firstByte.Store(tt.firstByte)
			if got := tr.verdict(tt.req, tt.err); got != tt.want {
				t.Fatalf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}

// TestConcurrentClients: many clients over three servers, one of which
// stops mid-way; every request is answered, each exactly once.
func TestConcurrentClients(t *testing.T) {
	a := newBackend(t, "a", 200)
	b := newBackend(t, "b", 200)
	cc := newBackend(t, "c", 200)
	tr, err := New([]string{a.URL, b.URL, cc.URL}, &http.Transport{MaxIdleConnsPerHost: 64})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var ok, ambiguous atomic.Int64
	const clients, each = 16, 40
	for i := range clients {
		wg.Go(func() {
			for j := range each {
				if i == 0 && j == each/2 {
					a.Close()
				}
				req, _ := http.NewRequest("POST", a.URL+"/n", bytes.NewReader([]byte(strconv.Itoa(i*each+j))))
				if _, _, err := send(c, req); err != nil {
					var fe *Error
					if errors.As(err, &fe) && fe.MayHaveRun {
						ambiguous.Add(1)
						continue // a closed a connection as the request was sent; counted below
					}
					t.Errorf("request %d: %v", i*each+j, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	total := a.hits.Load() + b.hits.Load() + cc.hits.Load()
	if total < ok.Load() || total > clients*each {
		t.Fatalf("servers saw %d requests, %d answered, %d sent", total, ok.Load(), clients*each)
	}
	// No request ran twice. (Some of those whose connection a closed as
	// they were sent did run: httptest's Close can close a connection
	// whose request net/http has read but not yet marked active, which is
	// why such a failure is never sent elsewhere.)
	seen := map[string]bool{}
	for _, be := range []*backend{a, b, cc} {
		for len(be.bodys) > 0 {
			got := <-be.bodys
			if seen[got] {
				t.Fatalf("%q ran twice", got)
			}
			seen[got] = true
		}
	}
	t.Logf("answered %d of %d (a %d, b %d, c %d); %d closed by a as they were sent", ok.Load(), clients*each, a.hits.Load(), b.hits.Load(), cc.hits.Load(), ambiguous.Load())
}

// TestServerSpoke: the look at a reused connection's socket before a
// request is written sees the server's close (FIN or reset) and any bytes
// it sent, and nothing on a quiet connection; a refused write writes
// nothing.
func TestServerSpoke(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (*conn, net.Conn) {
		t.Helper()
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(); srv.Close() })
		return &conn{Conn: cl}, srv
	}
	settle := func(c *conn, want bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for serverSpoke(c.Conn) != want {
			if time.Now().After(deadline) {
				t.Fatalf("serverSpoke stayed %v", !want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	c, srv := pair()
	if serverSpoke(c.Conn) {
		t.Fatal("a quiet connection looks closed")
	}
	// A read pending on another goroutine (net/http's readLoop) does not
	// stop the look.
	go c.Read(make([]byte, 1))
	time.Sleep(10 * time.Millisecond)
	if serverSpoke(c.Conn) {
		t.Fatal("a quiet connection with a pending read looks closed")
	}
	srv.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond) // the pending read takes the byte

	c, srv = pair()
	srv.Close()
	settle(c, true)
	c.checkNext.Store(true)
	if n, err := c.Write([]byte("POST / HTTP/1.1\r\n")); n != 0 || !errors.Is(err, errServerClosing) || c.written.Load() != 0 {
		t.Fatalf("write after the server's close: %d %v", n, err)
	}
	// Without checkNext (a fresh connection, or the rest of a request)
	// the write goes through.
	if n, _ := c.Write([]byte("x")); n != 1 {
		t.Fatalf("unchecked write wrote %d", n)
	}

	c, srv = pair()
	srv.(*net.TCPConn).SetLinger(0)
	srv.Close()
	settle(c, true)

	c, srv = pair()
	srv.Write([]byte("unsolicited"))
	settle(c, true)
}
