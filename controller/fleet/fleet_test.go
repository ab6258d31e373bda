package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

type testController struct {
	fleet *Fleet
	store *store.Embedded
	addr  string
	token string
	disp  *Dispatcher
	// stop ends Serve and returns its error.
	stop func() error
}

func startController(t testing.TB) *testController {
	t.Helper()
	return startControllerWith(t, nil)
}

// startControllerWith is startController with its Config changed by edit
// before the fleet is made.
func startControllerWith(t testing.TB, edit func(*Config)) *testController {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenEmbedded(filepath.Join(dir, "controller.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	sum := sha256.Sum256(secret)
	if _, err := st.CreateJoinToken(context.Background(), store.JoinToken{ID: "jt_test", SecretHash: sum[:]}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Identity: id, Store: st, HeartbeatInterval: time.Second, Logger: testLogger(t)}
	if edit != nil {
		edit(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pc) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		pc.Close()
	})
	return &testController{
		fleet: f, store: st, addr: pc.LocalAddr().String(),
		token: protocol.JoinToken{Fingerprint: id.Fingerprint, Secret: secret}.String(),
		disp:  NewDispatcher(f, st, 10*time.Second),
		stop:  stop,
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testAgent struct {
	link   *link.Link
	exec   *executor.Executor
	state  *state.State
	rt     *runtime.Runtime
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t testing.TB, addr, token, name, dir string) *testAgent {
	t.Helper()
	return startAgentOn(t, addr, token, name, dir, nil)
}

// startAgentOn runs an agent whose QUIC traffic goes through pc (nil: its own socket).
func startAgentOn(t testing.TB, addr, token, name, dir string, pc net.PacketConn) *testAgent {
	t.Helper()
	return startAgentWith(t, addr, token, name, dir, link.Config{PacketConn: pc})
}

// startAgentWith runs an agent with extra link settings.
func startAgentWith(t testing.TB, addr, token, name, dir string, extra link.Config) *testAgent {
	t.Helper()
	return startAgentRuntime(t, addr, token, name, dir, runtime.Config{}, extra)
}

// startAgentRuntime runs an agent with runtime and extra link settings.
func startAgentRuntime(t testing.TB, addr, token, name, dir string, rcfg runtime.Config, extra link.Config) *testAgent {
	t.Helper()
	rcfg.CacheDir = dir
	rt, err := runtime.New(context.Background(), rcfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	ex := executor.New(rt, st, nil, nil)
	logger := testLogger(t).With("agent", name)
	if extra.Logger != nil {
		logger = extra.Logger
	}
	l, err := link.New(link.Config{Addr: addr, JoinToken: token, State: st, Executor: ex, Name: name, PacketConn: extra.PacketConn, MaxStreams: extra.MaxStreams,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{link: l, exec: ex, state: st, rt: rt, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- l.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *testAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
	a.rt.Close(context.Background())
	a.state.Close()
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 15*time.Second, what, cond)
}

func createFunction(t testing.TB, st store.Store, name, fixture string, meta string) store.Function {
	t.Helper()
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", fixture+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := runtime.Inspect(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	fn := store.Function{Module: "_", Name: name, Digest: info.Digest, ABI: string(info.ABI)}
	if fn.Spec.Metadata, err = fnspec.ParseMetadata([]byte(meta)); err != nil {
		t.Fatal(err)
	}
	fn, err = st.CreateFunction(context.Background(), fn, code)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

func invokeFn(t *testing.T, c *testController, fn store.Function, args string, sched invoke.Scheduling) (string, error) {
	t.Helper()
	res, err := c.disp.Invoke(context.Background(), invoke.Request{
		Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Metadata: fn.Spec.Metadata,
		Args: json.RawMessage(args), Scheduling: sched,
	})
	return string(res.Output), err
}

func TestInvokeAcrossTwoAgents(t *testing.T) {
	c := startController(t)
	a1 := startAgent(t, c.addr, c.token, "edge1", t.TempDir())
	a2 := startAgent(t, c.addr, c.token, "edge2", t.TempDir())
	waitFor(t, "two agents", func() bool { return c.fleet.Connected() == 2 })

	hello := createFunction(t, c.store, "hello", "hello_c", "")
	echo := createFunction(t, c.store, "echo", "echo_rust", "")
	for i := range 20 {
		out, err := invokeFn(t, c, hello, `{"name":"Ada"}`, invoke.Scheduling{})
		if err != nil || out != `{"payload":"Hello Ada!"}` {
			t.Fatalf("call %d: %s %v", i, out, err)
		}
	}
	out, err := invokeFn(t, c, echo, `{"wasi":true}`, invoke.Scheduling{})
	if err != nil || out != `{"wasi":true}` {
		t.Fatalf("WASI echo: %s %v", out, err)
	}
	// The code was pulled (NeedCode) by whichever agents ran it and is now stored there.
	if !a1.state.HasCode(hello.Digest) && !a2.state.HasCode(hello.Digest) {
		t.Fatal("no agent stored the pulled code")
	}

	// Function failures map to the API's errors.
	guest := createFunction(t, c.store, "guest", "guest_error", "")
	if _, err := invokeFn(t, c, guest, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrGuest) || !strings.Contains(err.Error(), "something went wrong") {
		t.Fatalf("guest error: %v", err)
	}
	trap := createFunction(t, c.store, "trap", "trap", "")
	if _, err := invokeFn(t, c, trap, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrFailed) || !strings.Contains(err.Error(), "divide by zero") {
		t.Fatalf("trap: %v", err)
	}

	// APP script routes to the named agent.
	if _, err := c.store.PutScript(context.Background(), store.Script{Name: "only2", Source: []byte("- default:\n    - workers: [edge2]\n  followup: fail\n")}); err != nil {
		t.Fatal(err)
	}
	before := a2.exec.Total()
	for range 5 {
		if _, err := invokeFn(t, c, hello, `{}`, invoke.Scheduling{Language: "app", Script: "only2"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := a2.exec.Total() - before; got != 5 {
		t.Fatalf("edge2 ran %d of 5 APP-routed calls", got)
	}

	// An agent stopped: calls go to the other one.
	a1.stop()
	waitFor(t, "edge1 disconnected", func() bool { return c.fleet.Connected() == 1 })
	for range 5 {
		if out, err := invokeFn(t, c, hello, `{"name":"B"}`, invoke.Scheduling{}); err != nil || out != `{"payload":"Hello B!"}` {
			t.Fatalf("after edge1 stopped: %s %v", out, err)
		}
	}
	agents := c.agents(t)
	if len(agents) != 2 || !agents[0].Connected || agents[1].Connected || agents[1].Name != "edge1" {
		t.Fatalf("agents list: %+v", agents)
	}
	a2.stop()
	waitFor(t, "no agents", func() bool { return c.fleet.Connected() == 0 })
	if _, err := invokeFn(t, c, hello, `{}`, invoke.Scheduling{}); !errors.Is(err, invoke.ErrNoWorker) {
		t.Fatalf("no agents: %v", err)
	}
}

func TestAgentRestartKeepsIdentityAndCompiledCode(t *testing.T) {
	c := startController(t)
	dir := t.TempDir()
	a := startAgent(t, c.addr, c.token, "edge", dir)
	waitFor(t, "agent", func() bool { return c.fleet.Connected() == 1 })
	hello := createFunction(t, c.store, "hello", "hello_c", "")
	if _, err := invokeFn(t, c, hello, `{}`, invoke.Scheduling{}); err != nil {
		t.Fatal(err)
	}
	id1 := c.agents(t)[0].ID
	a.stop()
	waitFor(t, "disconnect", func() bool { return c.fleet.Connected() == 0 })

	// Restart without a join token: the stored credential is enough.
	a = startAgent(t, c.addr, "", "edge", dir)
	waitFor(t, "reconnect", func() bool { return c.fleet.Connected() == 1 })
	if got := c.agents(t); len(got) != 1 || got[0].ID != id1 {
		t.Fatalf("identity changed: %+v (was %s)", got, id1)
	}
	if _, err := invokeFn(t, c, hello, `{}`, invoke.Scheduling{}); err != nil {
		t.Fatal(err)
	}
	if s := a.rt.Stats(); s.DiskCacheHits != 1 {
		t.Fatalf("restarted agent recompiled: %+v", s)
	}
}

func TestControllerRestartAgentsReconnect(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenEmbedded(filepath.Join(dir, "controller.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, _ := LoadOrCreateIdentity(dir)
	secret := []byte("0123456789abcdef0123456789abcdef")
	sum := sha256.Sum256(secret)
	st.CreateJoinToken(context.Background(), store.JoinToken{ID: "jt_x", SecretHash: sum[:]})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	serve := func(pc net.PacketConn) (*Fleet, context.CancelFunc, chan error) {
		f, _ := New(Config{Identity: id, Store: st, HeartbeatInterval: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Serve(ctx, pc) }()
		return f, cancel, done
	}
	f, cancel, done := serve(pc)
	startAgent(t, addr, protocol.JoinToken{Fingerprint: id.Fingerprint, Secret: secret}.String(), "edge", t.TempDir())
	waitFor(t, "agent", func() bool { return f.Connected() == 1 })
	cancel()
	<-done
	pc.Close()

	pc, err = net.ListenPacket("udp", addr) // same address, new controller
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	f, cancel, done = serve(pc)
	defer func() { cancel(); <-done }()
	waitFor(t, "agent reconnects by itself", func() bool { return f.Connected() == 1 })
}

func TestRefusals(t *testing.T) {
	c := startController(t)
	good, _ := protocol.ParseJoinToken(c.token)

	wrongSecret := protocol.JoinToken{Fingerprint: good.Fingerprint, Secret: make([]byte, 32)}.String()
	otherKey := protocol.JoinToken{Secret: good.Secret}.String() // pins a key the controller does not have

	for name, tok := range map[string]string{"wrong secret": wrongSecret, "forged certificate": otherKey} {
		t.Run(name, func(t *testing.T) {
			pinFailures := &recordCounter{msg: "controller link down, reconnecting", err: "does not match the pinned one"}
			a := startAgentWith(t, c.addr, tok, "intruder", t.TempDir(), link.Config{Logger: slog.New(pinFailures)})
			if name == "wrong secret" {
				select {
				case err := <-a.done:
					if !errors.Is(err, link.ErrRefused) {
						t.Fatalf("Run: %v, want ErrRefused", err)
					}
					a.done <- err // let stop() drain it
				case <-time.After(10 * time.Second):
					t.Fatal("agent with a wrong secret was not refused")
				}
			} else {
				// A few dial attempts, all failing the pin, and never connected.
				testwait.For(t, 10*time.Second, "three dial attempts failing the pin", func() bool { return pinFailures.count() >= 3 })
				if a.link.Connected() {
					t.Fatal("agent connected to a controller whose key does not match its pin")
				}
			}
			if c.fleet.Connected() != 0 {
				t.Fatal("an intruder is connected")
			}
		})
	}

	t.Run("garbage datagrams", func(t *testing.T) {
		conn, err := net.Dial("udp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		junk := make([]byte, 1200)
		for i := range 2000 {
			rand.Read(junk[:1+i%1200])
			conn.Write(junk[:1+i%1200])
		}
		a := startAgent(t, c.addr, c.token, "honest", t.TempDir())
		waitFor(t, "honest agent after the garbage", func() bool { return c.fleet.Connected() == 1 && a.link.Connected() })
	})
}

func TestPushAndDrop(t *testing.T) {
	c := startController(t)
	a := startAgent(t, c.addr, c.token, "edge", t.TempDir())
	waitFor(t, "agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(t, c.store, "hello", "hello_wat", "")
	code, _ := c.store.Code(context.Background(), fn.Digest)
	s := c.fleet.Sessions()[0]
	if err := s.Push(context.Background(), fn.Digest, code); err != nil {
		t.Fatal(err)
	}
	if !a.rt.Loaded(fn.Digest) || !a.state.HasCode(fn.Digest) || !s.HasDigest(fn.Digest) {
		t.Fatal("pushed code not compiled, stored and recorded")
	}
	if err := s.Push(context.Background(), fn.Digest, []byte("\x00asm garbage")); err == nil {
		t.Fatal("a push whose bytes do not match the digest was accepted")
	}
	c.fleet.Drop(fn.Digest)
	waitFor(t, "drop", func() bool { return !a.state.HasCode(fn.Digest) && !a.rt.Loaded(fn.Digest) })
	if err := s.Ping(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentInvocations(t *testing.T) {
	c := startController(t)
	startAgent(t, c.addr, c.token, "edge1", t.TempDir())
	startAgent(t, c.addr, c.token, "edge2", t.TempDir())
	waitFor(t, "agents", func() bool { return c.fleet.Connected() == 2 })
	fn := createFunction(t, c.store, "hello", "hello_c", "")
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := invokeFn(t, c, fn, `{"name":"X"}`, invoke.Scheduling{})
			if err != nil || out != `{"payload":"Hello X!"}` {
				errs <- errors.Join(err, errors.New(out))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStreamsAreReleased: every invocation and push uses one stream; both
// sides must end it so that QUIC gives the controller a new one. With a
// limit of 4 concurrent streams, 60 sequential calls and pushes only pass if
// none leaks.
func TestStreamsAreReleased(t *testing.T) {
	c := startController(t)
	startAgentWith(t, c.addr, c.token, "edge", t.TempDir(), link.Config{MaxStreams: 4})
	waitFor(t, "agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(t, c.store, "hello", "hello_wat", "")
	code, _ := c.store.Code(context.Background(), fn.Digest)
	for i := range 60 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if i%10 == 0 {
			if err := c.fleet.Sessions()[0].Push(ctx, fn.Digest, code); err != nil {
				t.Fatalf("push %d: %v", i, err)
			}
		}
		_, err := c.disp.Invoke(ctx, invoke.Request{Module: "_", Function: "hello", Digest: fn.Digest, Args: json.RawMessage(`{}`)})
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestHelloWithoutSecretIsRefused: a client that reaches the controller with
// the right key pin but presents neither a join secret nor a credential is
// answered Unauthorized and disconnected; a Hello of another protocol
// version is refused too.
func TestHelloWithoutSecretIsRefused(t *testing.T) {
	c := startController(t)
	tok, _ := protocol.ParseJoinToken(c.token)
	for name, hello := range map[string]*protocol.Hello{
		"no secret":      {Name: "anon", ProtocolVersion: protocol.Version},
		"old version":    {Name: "old", ProtocolVersion: 0, JoinSecret: tok.Secret},
		"bad credential": {Name: "liar", AgentID: "ag_0000000000000000", Credential: []byte("guess"), ProtocolVersion: protocol.Version},
	} {
		t.Run(name, func(t *testing.T) {
			tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, InsecureSkipVerify: true}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := quic.DialAddr(ctx, c.addr, tlsConf, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := protocol.WriteMsg(s, hello); err != nil {
				t.Fatal(err)
			}
			msg, err := protocol.ReadMsg(s, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			perr, ok := msg.(*protocol.Error)
			if !ok || (perr.Code != protocol.Unauthorized && perr.Code != protocol.UnsupportedVersion) {
				t.Fatalf("answer %#v", msg)
			}
			select {
			case <-conn.Context().Done():
			case <-ctx.Done():
				t.Fatal("connection not closed after the refusal")
			}
			if c.fleet.Connected() != 0 {
				t.Fatal("refused client counted as connected")
			}
		})
	}
}

// recordCounter is a slog.Handler that counts the records with message msg
// whose "err" attribute contains err.
type recordCounter struct {
	msg, err string
	mu       sync.Mutex
	n        int
}

func (h *recordCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordCounter) WithGroup(string) slog.Handler            { return h }

func (h *recordCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" && strings.Contains(a.Value.String(), h.err) {
			h.mu.Lock()
			h.n++
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func (h *recordCounter) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// TestInvokeNamesActivation: the dispatcher's answer names the activation
// it recorded, on success and on the function's own error (the API sends
// it as X-Wisp-Activation-Id).
func TestInvokeNamesActivation(t *testing.T) {
	c := startController(t)
	startAgent(t, c.addr, c.token, "edge", t.TempDir())
	waitFor(t, "agent", func() bool { return c.fleet.Connected() == 1 })
	ok := createFunction(t, c.store, "hello", "hello_wat", "")
	bad := createFunction(t, c.store, "bad", "guest_error", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.disp.Invoke(ctx, invoke.Request{Module: "_", Function: "hello", Digest: ok.Digest, Args: json.RawMessage(`{}`)})
	if err != nil || len(res.Activation) != 26 {
		t.Fatalf("hello: %+v, %v; want an activation id", res, err)
	}
	_, err = c.disp.Invoke(ctx, invoke.Request{Module: "_", Function: "bad", Digest: bad.Digest, Args: json.RawMessage(`{}`)})
	if !errors.Is(err, invoke.ErrGuest) || len(invoke.ActivationOf(err)) != 26 || invoke.ActivationOf(err) == res.Activation {
		t.Fatalf("guest error: %v, activation %q; want a new activation id", err, invoke.ActivationOf(err))
	}
}

// agents is the fleet's GET /v1/agents list.
func (c *testController) agents(t testing.TB) []AgentInfo {
	t.Helper()
	as, err := c.fleet.Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return as
}
