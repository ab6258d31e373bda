package link

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

// controller is a controller's side of the protocol, played by the test
// over real QUIC on loopback.
type controller struct {
	ln   *quic.Listener
	pin  [32]byte
	addr string
}

func newController(t *testing.T) *controller {
	t.Helper()
	return newControllerAt(t, newCert(t), "127.0.0.1:0")
}

// newCert makes a controller's self-signed certificate.
func newCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"wisp-controller"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// newControllerAt listens at addr with cert (controllers of one cluster
// share their key).
func newControllerAt(t *testing.T, cert tls.Certificate, addr string) *controller {
	t.Helper()
	c, err := listenController(t, cert, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func listenController(t *testing.T, cert tls.Certificate, addr string) (*controller, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, Certificates: []tls.Certificate{cert}}
	ln, err := quic.ListenAddr(addr, tc, &quic.Config{MaxIdleTimeout: 6 * time.Second, KeepAlivePeriod: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { ln.Close() })
	return &controller{ln: ln, pin: protocol.KeyFingerprint(cert.Leaf), addr: ln.Addr().String()}, nil
}

// token is a join token for c.
func (c *controller) token(secret string) string {
	return protocol.JoinToken{Fingerprint: c.pin, Secret: []byte(secret)}.String()
}

// session is one agent connection as the controller sees it.
type session struct {
	conn  *quic.Conn
	ctrl  *quic.Stream
	hello *protocol.Hello
	acks  []func() // acknowledgements held back (batchOn)
}

// ack sends the acknowledgements held back.
func (s *session) ack() {
	for _, f := range s.acks {
		f()
	}
}

// accept takes the next connection and reads its Hello.
func (c *controller) accept(t *testing.T) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := c.ln.Accept(ctx)
	if err != nil {
		t.Fatalf("no agent connected: %v", err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "test over") })
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("no control stream: %v", err)
	}
	msg, err := protocol.ReadMsg(ctrl, protocol.MaxFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	hello, ok := msg.(*protocol.Hello)
	if !ok {
		t.Fatalf("first frame %v, want Hello", msg.Type())
	}
	return &session{conn: conn, ctrl: ctrl, hello: hello}
}

func (s *session) send(t *testing.T, m protocol.Message) {
	t.Helper()
	if err := protocol.WriteMsg(s.ctrl, m); err != nil {
		t.Fatal(err)
	}
}

func (s *session) welcome(t *testing.T, agentID string, credential []byte) {
	t.Helper()
	s.send(t, &protocol.Welcome{AgentID: agentID, Credential: credential, ControllerID: "test", HeartbeatIntervalMS: 50, ProtocolVersion: protocol.Version})
}

// call opens a stream, writes m, and reads every frame until the agent's
// FIN, answering NeedCode with code.
func (s *session) call(t *testing.T, m protocol.Message, code []byte) []protocol.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	str.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err := protocol.WriteMsg(str, m); err != nil {
		t.Fatal(err)
	}
	var got []protocol.Message
	for {
		msg, err := protocol.ReadMsg(str, protocol.MaxFrameSize)
		if err != nil {
			if len(got) == 0 {
				t.Fatalf("reading the answer to %v: %v", m.Type(), err)
			}
			return got
		}
		got = append(got, msg)
		if nc, ok := msg.(*protocol.NeedCode); ok {
			if err := protocol.WriteMsg(str, &protocol.Code{Digest: nc.Digest, Wasm: code}); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := msg.(*protocol.Result); ok {
			return got
		}
	}
}

// agent is the agent side: state, runtime, executor and a running Link.
type agent struct {
	st   *state.State
	ex   *executor.Executor
	link *Link
	log  *logBuffer
	runner

	mu      sync.Mutex
	desired [][]protocol.DesiredFunction
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newAgent(t *testing.T, c *controller, token string) *agent {
	t.Helper()
	dir := t.TempDir()
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{st: st, ex: executor.New(rt, st, nil, nil), log: &logBuffer{}}
	t.Cleanup(func() {
		rt.Close(context.Background())
		st.Close()
	})
	a.link, err = New(Config{Addr: c.addr, JoinToken: token, State: st, Executor: a.ex, Name: "edge", Labels: []string{"zone=a"},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnDesired: func(fs []protocol.DesiredFunction, triggers bool) {
			if !triggers {
				return // counted: the changes that resync triggers
			}
			a.mu.Lock()
			a.desired = append(a.desired, fs)
			a.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// run starts the link; the test's end stops it (if it has not stopped).
func (a *agent) run(t *testing.T) { a.start(t, "Link.Run", a.log, a.link.Run) }

// runner runs a Link or a Pool in the background for a test.
type runner struct {
	stop context.CancelFunc
	done chan error
	what string
	log  *logBuffer
}

// start runs run until the test's end (or stop).
func (r *runner) start(t *testing.T, what string, log *logBuffer, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done, r.what, r.log = cancel, make(chan error, 1), what, log
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		r.wait(t)
	})
}

// wait returns run's error once it returned.
func (r *runner) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // later waits see it too
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not return; log:\n%s", r.what, r.log)
		return nil
	}
}

func wasm(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// linkGoroutines lists the goroutines running this package's code (but the
// test's own).
func linkGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:goruntime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "wisp/agent/link.") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

// TestJoinThenCredential: the first Hello carries the join token's secret
// and no agent id; the Welcome's identity is stored with the pinned key,
// heartbeats follow, and the next connection presents the credential
// instead of the secret.
func TestJoinThenCredential(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("s3cret-of-16-bytes"))
	a.run(t)
	s := c.accept(t)
	if h := s.hello; h.AgentID != "" || string(h.JoinSecret) != "s3cret-of-16-bytes" || h.Name != "edge" || !slices.Equal(h.Labels, []string{"zone=a"}) || h.ProtocolVersion != protocol.Version {
		t.Fatalf("first hello %+v", h)
	}
	s.welcome(t, "agent-1", []byte("cred"))
	testwait.For(t, 10*time.Second, "the link to be up", a.link.Connected)
	id, err := a.st.Identity()
	if err != nil || id.AgentID != "agent-1" || string(id.Credential) != "cred" || !bytes.Equal(id.Controller, c.pin[:]) {
		t.Fatalf("stored identity %+v %v", id, err)
	}
	s.ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if msg, err := protocol.ReadMsg(s.ctrl, protocol.MaxFrameSize); err != nil || msg.Type() != protocol.TypeHeartbeat {
		t.Fatalf("after welcome: %v %v, want a heartbeat", msg, err)
	}

	s.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "go away")
	s2 := c.accept(t)
	if h := s2.hello; h.AgentID != "agent-1" || string(h.Credential) != "cred" || len(h.JoinSecret) != 0 {
		t.Fatalf("second hello %+v", h)
	}
}

// TestPinnedKey: an agent whose token names another key refuses the
// controller during the TLS handshake and never connects.
func TestPinnedKey(t *testing.T) {
	c := newController(t)
	other := newController(t)
	a := newAgent(t, c, other.token("another-secret-16b")) // the pin of another controller
	a.run(t)
	testwait.For(t, 10*time.Second, "the agent to refuse the controller's key", func() bool {
		return strings.Contains(a.log.String(), "does not match the pinned one")
	})
	if a.link.Connected() {
		t.Fatal("connected to a controller whose key is not the pinned one")
	}
}

// TestRefused: a join the controller refuses ends Run with ErrRefused.
func TestRefused(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("wrong-secret-16byt"))
	a.run(t)
	s := c.accept(t)
	s.send(t, &protocol.Error{Code: protocol.Unauthorized, Message: "bad join secret"})
	if err := a.wait(t); !errors.Is(err, ErrRefused) {
		t.Fatalf("Run: %v, want ErrRefused", err)
	}
}

// TestInvokeFetchesCode: an Invoke of code the agent does not hold gets
// Started and NeedCode, then the Result of running the code sent back; a
// Code push is stored and acknowledged; a Ping gets its Pong; a stream
// that starts with anything else gets BadRequest.
func TestInvokeFetchesCode(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("secret-of-16-bytes"))
	a.run(t)
	s := c.accept(t)
	s.welcome(t, "agent-1", []byte("cred"))
	hello := wasm(t, "hello_c")
	digest := runtime.Digest(hello)

	got := s.call(t, &protocol.Invoke{ActivationID: "act-1", Module: "_", Function: "hello", Digest: digest, Args: []byte(`{"name":"Q"}`), TimeoutMS: 10000}, hello)
	var types []protocol.FrameType
	for _, m := range got {
		types = append(types, m.Type())
	}
	if !slices.Equal(types, []protocol.FrameType{protocol.TypeStarted, protocol.TypeNeedCode, protocol.TypeResult}) {
		t.Fatalf("frames %v, want Started, NeedCode, Result", types)
	}
	res := got[2].(*protocol.Result)
	if res.ActivationID != "act-1" || res.Code != protocol.OK || string(res.Output) != `{"payload":"Hello Q!"}` {
		t.Fatalf("result %+v", res)
	}

	guest := wasm(t, "guest_error")
	ack := s.call(t, &protocol.Code{Digest: runtime.Digest(guest), Wasm: guest}, nil)
	if a, ok := ack[0].(*protocol.Ack); !ok || a.ID != runtime.Digest(guest) {
		t.Fatalf("code push answered %+v", ack)
	}
	got = s.call(t, &protocol.Invoke{ActivationID: "act-2", Module: "_", Function: "guest", Digest: runtime.Digest(guest), Args: []byte(`{}`), TimeoutMS: 10000}, nil)
	if res := got[len(got)-1].(*protocol.Result); res.Code != protocol.GuestError {
		t.Fatalf("pushed code: result %+v, want a guest error without NeedCode", res)
	}
	// The Result carries the function's log lines as the runtime captured
	// them: text, stream and time.
	logger := wasm(t, "log")
	got = s.call(t, &protocol.Invoke{ActivationID: "act-3", Module: "_", Function: "log", Digest: runtime.Digest(logger), Args: []byte(`{}`), TimeoutMS: 10000}, logger)
	if res := got[len(got)-1].(*protocol.Result); len(res.Logs) != 2 || res.Logs[0].Text != "first line" || res.Logs[1].Text != "second line" ||
		res.Logs[0].Stream != protocol.StreamConsole || res.Logs[0].UnixUS == 0 {
		t.Fatalf("log lines of the result: %+v", res.Logs)
	}
	pong := s.call(t, &protocol.Ping{Nonce: 7, Payload: []byte("p")}, nil)
	if p, ok := pong[0].(*protocol.Pong); !ok || p.Nonce != 7 || string(p.Payload) != "p" {
		t.Fatalf("ping answered %+v", pong)
	}
	bad := s.call(t, &protocol.Heartbeat{}, nil)
	if e, ok := bad[0].(*protocol.Error); !ok || e.Code != protocol.BadRequest {
		t.Fatalf("a stream opened with a heartbeat answered %+v", bad)
	}
}

// TestDesiredSetAndOutbox: a DesiredSet on the control stream is stored and
// reported to OnDesired; the outbox goes to the controller in a batch on a
// stream of its own, and leaves the state only once acknowledged.
func TestDesiredSetAndOutbox(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("secret-of-16-bytes"))
	for _, id := range []string{"A1", "A2"} {
		if err := a.st.AppendOutbox(&protocol.OutboxEntry{ActivationID: id, Module: "_", Function: "f", Source: "local-api"}); err != nil {
			t.Fatal(err)
		}
	}
	a.run(t)
	s := c.accept(t)
	s.welcome(t, "agent-1", []byte("cred"))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	str, err := s.conn.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("no outbox stream: %v", err)
	}
	msg, err := protocol.ReadMsg(str, protocol.MaxFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	batch, ok := msg.(*protocol.OutboxBatch)
	if !ok || len(batch.Entries) != 2 || batch.Entries[0].ActivationID != "A1" {
		t.Fatalf("outbox stream opened with %+v", msg)
	}
	if n := a.st.OutboxLen(); n != 2 {
		t.Fatalf("%d entries left before the ack, want 2", n)
	}
	if err := protocol.WriteMsg(str, &protocol.OutboxAck{IDs: []string{"A1"}}); err != nil {
		t.Fatal(err)
	}
	str.Close()
	testwait.For(t, 10*time.Second, "the acknowledged entry to leave the outbox", func() bool {
		es, _ := a.st.Outbox(10)
		return len(es) >= 1 && es[0].ActivationID == "A2"
	})

	fns := []protocol.DesiredFunction{{Module: "_", Name: "f", Digest: "sha256:00", LocalTopics: []string{"a/b"}}}
	s.send(t, &protocol.DesiredSet{Functions: fns})
	testwait.For(t, 10*time.Second, "OnDesired", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.desired) == 1
	})
	if stored, err := a.st.Desired(); err != nil || len(stored) != 1 || stored[0].Name != "f" || !slices.Equal(stored[0].LocalTopics, []string{"a/b"}) {
		t.Fatalf("stored desired set %+v %v", stored, err)
	}
}

// TestShutdownDrains: when Run's context ends, an invocation in flight
// still sends its Result, a new one is refused with Draining (nothing
// ran), the connection is closed with CloseShutdown, and no goroutine of
// the link is left when Run returns.
func TestShutdownDrains(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("secret-of-16-bytes"))
	a.run(t)
	s := c.accept(t)
	s.welcome(t, "agent-1", []byte("cred"))
	loop, hello := wasm(t, "loop"), wasm(t, "hello_c")
	for _, code := range [][]byte{loop, hello} {
		if ack := s.call(t, &protocol.Code{Digest: runtime.Digest(code), Wasm: code}, nil); ack[0].Type() != protocol.TypeAck {
			t.Fatalf("code push answered %+v", ack)
		}
	}

	long := make(chan []protocol.Message, 1)
	go func() {
		long <- s.call(t, &protocol.Invoke{ActivationID: "long", Module: "_", Function: "loop", Digest: runtime.Digest(loop), Args: []byte(`{}`), TimeoutMS: 1500}, nil)
	}()
	testwait.For(t, 10*time.Second, "the long call to run", func() bool { return a.ex.InFlight() == 1 })
	a.stop()
	testwait.For(t, 10*time.Second, "a new invocation to be refused with Draining", func() bool {
		got := s.call(t, &protocol.Invoke{ActivationID: "late", Module: "_", Function: "hello", Digest: runtime.Digest(hello), Args: []byte(`{}`), TimeoutMS: 1000}, nil)
		res := got[len(got)-1].(*protocol.Result)
		return res.Code == protocol.Draining
	})
	got := <-long
	if res, ok := got[len(got)-1].(*protocol.Result); !ok || res.ActivationID != "long" || res.Code != protocol.Timeout {
		t.Fatalf("the call in flight ended with %+v, want its own Result (timeout)", got[len(got)-1])
	}
	err := a.wait(t)
	if left := linkGoroutines(); len(left) > 0 {
		t.Fatalf("%d link goroutines left after Run returned:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	<-s.conn.Context().Done()
	var app *quic.ApplicationError
	if err := context.Cause(s.conn.Context()); !errors.As(err, &app) || !app.Remote || protocol.CloseCode(app.ErrorCode) != protocol.CloseShutdown {
		t.Fatalf("connection closed with %v, want the agent's CloseShutdown", err)
	}
}

// A batch stays within the wire's log line cap and a byte budget, and
// always carries at least one entry.
func TestBatchPrefix(t *testing.T) {
	lines := func(n int) []protocol.LogLine { return make([]protocol.LogLine, n) }
	big := make([]byte, 4<<20)
	cases := []struct {
		name    string
		entries []protocol.OutboxEntry
		want    int
	}{
		{"small", make([]protocol.OutboxEntry, 500), 500},
		{"lines", []protocol.OutboxEntry{{Logs: lines(10001)}, {Logs: lines(10001)}, {Logs: lines(10001)}, {Logs: lines(10001)},
			{Logs: lines(10001)}, {Logs: lines(10001)}, {Logs: lines(10001)}}, 6},
		{"bytes", []protocol.OutboxEntry{{Output: big}, {Output: big}, {Output: big}, {Output: big}, {Output: big}}, 3},
		{"one huge", []protocol.OutboxEntry{{Output: make([]byte, 20<<20)}, {}}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := batchPrefix(c.entries)
			if len(got) != c.want {
				t.Fatalf("%d entries, want %d", len(got), c.want)
			}
			// What the prefix holds decodes: within the frame and the line cap.
			b := (&protocol.OutboxBatch{Entries: got}).Append(nil)
			var back protocol.OutboxBatch
			if err := back.UnmarshalBinary(b); err != nil && c.name != "one huge" {
				t.Fatalf("the batch does not decode: %v", err)
			}
		})
	}
}

// TestDropKeepsDesiredCode: a Drop of code the stored desired set names
// (a function's own, or a kept version's, KeepDigests) leaves it; once a
// desired set no longer names it, the deferred drop happens. Other code
// goes at once.
func TestDropKeepsDesiredCode(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("secret-of-16-bytes"))
	a.run(t)
	s := c.accept(t)
	s.welcome(t, "agent-1", []byte("cred"))
	codes := map[string][]byte{}
	for _, name := range []string{"hello_c", "guest_error", "log"} {
		code := wasm(t, name)
		codes[name] = code
		if ack := s.call(t, &protocol.Code{Digest: runtime.Digest(code), Wasm: code}, nil); ack[0].Type() != protocol.TypeAck {
			t.Fatalf("push of %s answered %+v", name, ack)
		}
	}
	cur, kept, other := runtime.Digest(codes["hello_c"]), runtime.Digest(codes["guest_error"]), runtime.Digest(codes["log"])
	s.send(t, &protocol.DesiredSet{Functions: []protocol.DesiredFunction{{Module: "_", Name: "f", Digest: cur, KeepDigests: []string{kept}}}})
	testwait.For(t, 10*time.Second, "the desired set", func() bool {
		fs, _ := a.st.Desired()
		return len(fs) == 1
	})
	s.send(t, &protocol.Drop{Digests: []string{cur, kept, other}})
	testwait.For(t, 10*time.Second, "the unneeded code to go", func() bool { return !a.st.HasCode(other) })
	if !a.st.HasCode(cur) || !a.st.HasCode(kept) {
		t.Fatalf("dropped code the desired set names: current %v, kept %v", a.st.HasCode(cur), a.st.HasCode(kept))
	}
	// A new desired set without the kept version: its deferred drop runs.
	s.send(t, &protocol.DesiredSet{Functions: []protocol.DesiredFunction{{Module: "_", Name: "f", Digest: cur}}})
	testwait.For(t, 10*time.Second, "the deferred drop", func() bool { return !a.st.HasCode(kept) })
	if !a.st.HasCode(cur) {
		t.Fatal("the current code went with the deferred drop")
	}
}

// TestReportDue: a load report goes out first, when its interval is up,
// and early only when the available memory moved by a sixteenth of the
// total or 64 MiB, whichever is less; a controller asking for a report
// every 2 s gets one at every check.
func TestReportDue(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name          string
		first         bool
		since, every  time.Duration
		total, was, n uint64
		want          bool
	}{
		{"first", true, 0, 30 * time.Second, 1024 * MiB, 0, 512 * MiB, true},
		{"quiet", false, 10 * time.Second, 30 * time.Second, 1024 * MiB, 512 * MiB, 500 * MiB, false},
		{"interval up", false, 29 * time.Second, 30 * time.Second, 1024 * MiB, 512 * MiB, 512 * MiB, true},
		{"fell 64 MiB of 1 GiB", false, 2 * time.Second, 30 * time.Second, 1024 * MiB, 512 * MiB, 448 * MiB, true},
		{"fell 63 MiB of 1 GiB", false, 2 * time.Second, 30 * time.Second, 1024 * MiB, 512 * MiB, 449 * MiB, false},
		{"rose 64 MiB of 64 GiB", false, 2 * time.Second, 30 * time.Second, 64 << 30, 10 << 30, 10<<30 + 64*MiB, true},
		{"16 MiB of 256 MiB", false, 2 * time.Second, 30 * time.Second, 256 * MiB, 100 * MiB, 116 * MiB, true},
		{"15 MiB of 256 MiB", false, 2 * time.Second, 30 * time.Second, 256 * MiB, 100 * MiB, 115 * MiB, false},
		{"an older controller's 2 s", false, 2 * time.Second, 2 * time.Second, 1024 * MiB, 512 * MiB, 512 * MiB, true},
		{"its 2 s, a tick early", false, 1900 * time.Millisecond, 2 * time.Second, 1024 * MiB, 512 * MiB, 512 * MiB, true},
	} {
		check := min(tc.every, loadCheck)
		if got := reportDue(tc.first, tc.since, tc.every, check, tc.total, tc.was, tc.n); got != tc.want {
			t.Errorf("%s: reportDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}
