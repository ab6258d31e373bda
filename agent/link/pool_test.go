package link

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

// poolAgent is an agent's state and executor with a running Pool.
type poolAgent struct {
	st   *state.State
	pool *Pool
	log  *logBuffer
	runner
}

// newPoolAgent makes a Pool of cfg over a fresh state; a test's
// identity, if any, is stored before the Pool runs.
func newPoolAgent(t *testing.T, cfg PoolConfig, id *state.Identity) *poolAgent {
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
	t.Cleanup(func() {
		rt.Close(context.Background())
		st.Close()
	})
	if id != nil {
		if err := st.SetIdentity(*id); err != nil {
			t.Fatal(err)
		}
	}
	a := &poolAgent{st: st, log: &logBuffer{}}
	cfg.Link.State, cfg.Link.Executor = st, executor.New(rt, st, nil, nil)
	cfg.Link.Name = "edge"
	cfg.Link.MinBackoff, cfg.Link.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	if cfg.Link.RefusedBackoff == 0 {
		cfg.Link.RefusedBackoff = 100 * time.Millisecond
	}
	cfg.Link.Logger = slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if a.pool, err = NewPool(cfg); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *poolAgent) run(t *testing.T) { a.start(t, "Pool.Run", a.log, a.pool.Run) }

// links returns the pool's links by address dialled.
func (a *poolAgent) links() map[string]status.Link {
	out := map[string]status.Link{}
	for _, l := range a.pool.Status() {
		out[l.Address+l.Controller] = l
	}
	return out
}

// connectedTo reports whether the pool has a connected link dialling addr.
func (a *poolAgent) connectedTo(addr string) bool {
	for _, l := range a.pool.Status() {
		if (l.Address == addr || l.Address == "" && l.Controller == addr) && l.Connected {
			return true
		}
	}
	return false
}

// acceptAll accepts every agent connection to c in the background and
// hands each, with its Hello read, to the channel.
func acceptAll(t *testing.T, c *controller) <-chan *session {
	t.Helper()
	ch := make(chan *session, 64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := c.ln.Accept(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
				defer hcancel()
				ctrl, err := conn.AcceptStream(hctx)
				if err != nil {
					conn.CloseWithError(0, "")
					return
				}
				msg, err := protocol.ReadMsg(ctrl, protocol.MaxFrameSize)
				hello, ok := msg.(*protocol.Hello)
				if err != nil || !ok {
					conn.CloseWithError(0, "")
					return
				}
				ch <- &session{conn: conn, ctrl: ctrl, hello: hello}
			})
		}
	})
	t.Cleanup(func() {
		for {
			select {
			case s := <-ch:
				s.conn.CloseWithError(0, "test over")
			default:
				return
			}
		}
	})
	return ch
}

// next is the next session on ch.
func next(t *testing.T, ch <-chan *session, what string) *session {
	t.Helper()
	select {
	case s := <-ch:
		t.Cleanup(func() { s.conn.CloseWithError(0, "test over") })
		return s
	case <-time.After(20 * time.Second):
		t.Fatalf("no connection: %s", what)
		return nil
	}
}

// none fails if a session arrives on ch within d.
func none(t *testing.T, ch <-chan *session, d time.Duration, what string) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("%s: got a connection with hello %+v", what, s.hello)
	case <-time.After(d):
	}
}

func refuse(t *testing.T, s *session) {
	t.Helper()
	s.send(t, &protocol.Error{Code: protocol.Unauthorized, Message: "unknown agent or bad credential"})
}

func isJoin(h *protocol.Hello) bool {
	return len(h.JoinSecret) > 0 && h.AgentID == "" && len(h.Credential) == 0
}

func presents(h *protocol.Hello, id, cred string) bool {
	return len(h.JoinSecret) == 0 && h.AgentID == id && string(h.Credential) == cred
}

// TestPoolJoinsOnce: with a join token and no identity, one link presents
// the token; the other says nothing until the identity is stored, then
// presents the credential. A single-use token is spent once.
func TestPoolJoinsOnce(t *testing.T) {
	cert := newCert(t)
	c1, c2 := newControllerAt(t, cert, "127.0.0.1:0"), newControllerAt(t, cert, "127.0.0.1:0")
	s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
	a := newPoolAgent(t, PoolConfig{Controllers: []string{c1.addr, c2.addr}, Link: Config{JoinToken: c1.token("secret-of-16-bytes")}}, nil)
	a.run(t)

	var joiner *session
	other := s2
	select {
	case joiner = <-s1:
	case joiner = <-s2:
		other = s1
	case <-time.After(20 * time.Second):
		t.Fatal("no link joined")
	}
	if !isJoin(joiner.hello) {
		t.Fatalf("first hello %+v, want a join", joiner.hello)
	}
	none(t, other, 500*time.Millisecond, "while the join is under way")
	joiner.welcome(t, "agent-1", []byte("cred"))
	s := next(t, other, "the second link after the join")
	if !presents(s.hello, "agent-1", "cred") {
		t.Fatalf("second link's hello %+v, want the credential the join got", s.hello)
	}
	s.welcome(t, "agent-1", nil)
	testwait.For(t, 10*time.Second, "both links up", func() bool { return a.connectedTo(c1.addr) && a.connectedTo(c2.addr) })
	none(t, s1, 300*time.Millisecond, "after both links are up")
	none(t, s2, 0, "after both links are up")
}

// TestPoolJoinRefusedByOne: a controller that refuses the join token (it
// is on another database) does not stop the agent: the link to the other
// controller joins, and the refusing one keeps refusing the credential
// without costing the identity.
func TestPoolJoinRefusedByOne(t *testing.T) {
	cert := newCert(t)
	good, wrong := newControllerAt(t, cert, "127.0.0.1:0"), newControllerAt(t, cert, "127.0.0.1:0")
	sg, sw := acceptAll(t, good), acceptAll(t, wrong)
	a := newPoolAgent(t, PoolConfig{Controllers: []string{good.addr, wrong.addr}, Link: Config{JoinToken: good.token("secret-of-16-bytes")}}, nil)
	a.run(t)
	// Whatever the order: the wrong one refuses everything, the good one
	// welcomes the join.
	refusals := 0
	for joined := false; !joined || refusals < 3; {
		select {
		case s := <-sw:
			refuse(t, s)
			refusals++
		case s := <-sg:
			if !isJoin(s.hello) {
				t.Fatalf("good controller got %+v, want a join", s.hello)
			}
			s.welcome(t, "agent-1", []byte("cred"))
			joined = true
		case <-time.After(20 * time.Second):
			t.Fatalf("joined %v, %d refusals; log:\n%s", joined, refusals, a.log)
		}
	}
	id, _ := a.st.Identity()
	if id.AgentID != "agent-1" || string(id.Credential) != "cred" {
		t.Fatalf("identity %+v after refusals by the wrong controller", id)
	}
	if !a.connectedTo(good.addr) {
		t.Fatal("the link to the good controller is down")
	}
	if st := a.links()[wrong.addr]; st.Connected || !strings.Contains(st.LastError, "refused") {
		t.Fatalf("link to the wrong controller: %+v", st)
	}
}

// TestRefusalRule: the agent gives its identity up only when every link's
// latest answer refused it; a link with no answer (its controller is
// down) keeps it. With a token it then joins again through one link;
// without, Run stops with ErrRefused.
func TestRefusalRule(t *testing.T) {
	identity := func(c *controller) *state.Identity {
		return &state.Identity{AgentID: "agent-1", Credential: []byte("cred"), Controller: bytes.Clone(c.pin[:])}
	}
	t.Run("one refuses while the other accepts, then both", func(t *testing.T) {
		cert := newCert(t)
		c1, c2 := newControllerAt(t, cert, "127.0.0.1:0"), newControllerAt(t, cert, "127.0.0.1:0")
		s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
		a := newPoolAgent(t, PoolConfig{Controllers: []string{c1.addr, c2.addr}, Link: Config{JoinToken: c1.token("secret-of-16-bytes")}}, identity(c1))
		a.run(t)
		accepted := next(t, s2, "the accepting controller")
		accepted.welcome(t, "agent-1", nil)
		for range 3 {
			s := next(t, s1, "the refusing controller")
			if !presents(s.hello, "agent-1", "cred") {
				t.Fatalf("hello %+v, want the credential", s.hello)
			}
			refuse(t, s)
		}
		if got, _ := a.st.Identity(); got.AgentID != "agent-1" {
			t.Fatalf("identity %+v after one controller refused it", got)
		}
		// The agent is removed: the accepting controller closes its session
		// and refuses it too. Then one link joins with the token.
		accepted.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseRefused), "agent removed")
		var join *session
		joinedAt := ""
		for join == nil {
			var s *session
			var at string
			select {
			case s = <-s1:
				at = c1.addr
			case s = <-s2:
				at = c2.addr
			case <-time.After(20 * time.Second):
				t.Fatalf("no join after both refused; log:\n%s", a.log)
			}
			if isJoin(s.hello) {
				join, joinedAt = s, at
				continue
			}
			refuse(t, s)
		}
		other := s1
		if joinedAt == c1.addr {
			other = s2
		}
		// Drain credential hellos still in flight from before the wipe.
		for quiet := false; !quiet; {
			select {
			case s := <-other:
				if isJoin(s.hello) {
					t.Fatalf("two links presented the join token")
				}
				refuse(t, s)
			case <-time.After(300 * time.Millisecond):
				quiet = true
			}
		}
		join.welcome(t, "agent-2", []byte("cred-2"))
		s := next(t, other, "the other link after the new join")
		if !presents(s.hello, "agent-2", "cred-2") {
			t.Fatalf("hello %+v after the new join, want its credential", s.hello)
		}
		s.welcome(t, "agent-2", nil)
		if got, _ := a.st.Identity(); got.AgentID != "agent-2" {
			t.Fatalf("identity %+v after the new join", got)
		}
	})
	t.Run("one refuses while the other cannot be reached", func(t *testing.T) {
		c1 := newController(t)
		s1 := acceptAll(t, c1)
		// A UDP socket nobody answers on: the link's dials time out.
		mute, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mute.Close() })
		a := newPoolAgent(t, PoolConfig{Controllers: []string{c1.addr, mute.LocalAddr().String()}, Link: Config{JoinToken: c1.token("secret-of-16-bytes")}}, identity(c1))
		a.run(t)
		for range 3 {
			s := next(t, s1, "the refusing controller")
			if !presents(s.hello, "agent-1", "cred") {
				t.Fatalf("hello %+v, want the credential", s.hello)
			}
			refuse(t, s)
		}
		if got, _ := a.st.Identity(); got.AgentID != "agent-1" {
			t.Fatalf("identity %+v forgotten while a controller had not answered", got)
		}
		select {
		case err := <-a.done:
			t.Fatalf("Run returned %v while a controller had not answered", err)
		default:
		}
	})
	t.Run("one refuses while the other's name resolves to nothing", func(t *testing.T) {
		c1 := newController(t)
		s1 := acceptAll(t, c1)
		noDNS := func(context.Context, string) ([]string, error) { return nil, errors.New("no such host") }
		a := newPoolAgent(t, PoolConfig{Controllers: []string{c1.addr, "ctl.wisp.test:4433"}, Resolve: noDNS}, identity(c1))
		a.run(t)
		for range 3 {
			refuse(t, next(t, s1, "the refusing controller"))
		}
		if got, _ := a.st.Identity(); got.AgentID != "agent-1" {
			t.Fatalf("identity %+v forgotten while a controller's name did not resolve", got)
		}
		select {
		case err := <-a.done:
			t.Fatalf("Run returned %v while a controller's name did not resolve", err)
		default:
		}
	})
	t.Run("every controller refuses, no token", func(t *testing.T) {
		cert := newCert(t)
		c1, c2 := newControllerAt(t, cert, "127.0.0.1:0"), newControllerAt(t, cert, "127.0.0.1:0")
		s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
		a := newPoolAgent(t, PoolConfig{Controllers: []string{c1.addr, c2.addr}}, identity(c1))
		a.run(t)
		refuse(t, next(t, s1, "the first controller"))
		select {
		case err := <-a.done:
			t.Fatalf("Run returned %v after one of two controllers refused", err)
		case <-time.After(300 * time.Millisecond):
		}
		refuse(t, next(t, s2, "the second controller"))
		if err := a.wait(t); !errors.Is(err, ErrRefused) {
			t.Fatalf("Run: %v, want ErrRefused", err)
		}
		if got, _ := a.st.Identity(); got.AgentID != "agent-1" {
			t.Fatalf("identity %+v: without a token it is left as it was", got)
		}
	})
}

// loopbackPair listens with cert on 127.0.0.1 and 127.0.0.2 at one port,
// as the controllers behind one name do.
func loopbackPair(t *testing.T, cert tls.Certificate) (*controller, *controller, string) {
	t.Helper()
	for range 20 {
		c2 := newControllerAt(t, cert, "127.0.0.2:0")
		_, port, _ := net.SplitHostPort(c2.addr)
		if c1, err := listenController(t, cert, "127.0.0.1:"+port); err == nil {
			return c1, c2, port
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, nil, ""
}

// fakeDNS is a DNS server on loopback: it answers every A query with its
// addresses and every other query with none.
type fakeDNS struct {
	pc  net.PacketConn
	mu  sync.Mutex
	ips []netip.Addr
}

func newFakeDNS(t *testing.T, ips ...string) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &fakeDNS{pc: pc}
	d.set(ips...)
	go d.serve()
	return d
}

func (d *fakeDNS) set(ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips = nil
	for _, ip := range ips {
		d.ips = append(d.ips, netip.MustParseAddr(ip))
	}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.pc.WriteTo(resp, from)
		}
	}
}

// answer is the response to query q (RFC 1035 4.1), nil if q is not one
// question.
func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qtype, end := binary.BigEndian.Uint16(q[i+1:]), i+5
	resp := append(make([]byte, 0, 512), q[0], q[1], 0x84|q[2]&0x01, 0x80, 0, 1, 0, 0, 0, 0, 0, 0)
	resp = append(resp, q[12:end]...)
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, ip := range d.ips {
		if qtype == 1 && ip.Is4() { // A, IN
			a := ip.As4()
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, a[0], a[1], a[2], a[3])
			n++
		}
	}
	binary.BigEndian.PutUint16(resp[6:], uint16(n))
	return resp
}

// resolver resolves names through d, with Go's own resolver.
func (d *fakeDNS) resolver() func(context.Context, string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}
	return r.LookupHost
}

// TestPoolFollowsResolution: a name gets a link per address it resolves
// to; a new address gets a link at the next resolution; a failed
// resolution changes nothing; a vanished address keeps its link while the
// session lasts, then loses it; and comes back with a new one.
func TestPoolFollowsResolution(t *testing.T) {
	cert := newCert(t)
	c1, c2, port := loopbackPair(t, cert)
	var mu sync.Mutex
	answer := []string{"127.0.0.1"}
	var dnsDown atomic.Bool
	resolve := func(_ context.Context, host string) ([]string, error) {
		if host != "ctl.wisp.test" {
			return nil, errors.New("unknown name " + host)
		}
		if dnsDown.Load() {
			return nil, errors.New("DNS is down")
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(answer), nil
	}
	set := func(ips ...string) {
		mu.Lock()
		defer mu.Unlock()
		answer = ips
	}
	name := "ctl.wisp.test:" + port
	s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
	a := newPoolAgent(t, PoolConfig{Controllers: []string{name}, Resolve: resolve, ResolveEvery: 50 * time.Millisecond},
		&state.Identity{AgentID: "agent-1", Credential: []byte("cred"), Controller: bytes.Clone(c1.pin[:])})
	a.run(t)
	first := next(t, s1, "the name's one address")
	first.welcome(t, "agent-1", nil)
	none(t, s2, 300*time.Millisecond, "an address the name does not resolve to")

	set("127.0.0.1", "127.0.0.2")
	next(t, s2, "the name's new address").welcome(t, "agent-1", nil)
	testwait.For(t, 10*time.Second, "both links up", func() bool { return a.connectedTo(c1.addr) && a.connectedTo(c2.addr) })
	for _, l := range a.pool.Status() {
		if l.Controller != name || (l.Address != c1.addr && l.Address != c2.addr) {
			t.Fatalf("link %+v, want the name given and the address dialled", l)
		}
	}

	dnsDown.Store(true)
	time.Sleep(300 * time.Millisecond) // several resolutions fail
	if len(a.pool.Status()) != 2 || !a.connectedTo(c1.addr) || !a.connectedTo(c2.addr) {
		t.Fatalf("links after failed resolutions: %+v", a.pool.Status())
	}
	dnsDown.Store(false)

	set("127.0.0.2")
	time.Sleep(300 * time.Millisecond)
	if !a.connectedTo(c1.addr) {
		t.Fatal("the link of a vanished address ended while its session was up")
	}
	first.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "going away")
	testwait.For(t, 10*time.Second, "the vanished address's link to go", func() bool { return len(a.pool.Status()) == 1 })
	none(t, s1, 300*time.Millisecond, "a vanished address")
	if !a.connectedTo(c2.addr) {
		t.Fatal("the other link went down")
	}

	set("127.0.0.1", "127.0.0.2")
	next(t, s1, "the address back").welcome(t, "agent-1", nil)
	testwait.For(t, 10*time.Second, "both links up again", func() bool { return a.connectedTo(c1.addr) && a.connectedTo(c2.addr) })
}

// TestPoolResolvesWithDNS: a name that a real DNS exchange (Go's resolver
// against a server on loopback) resolves to two addresses gets two links,
// one to each controller.
func TestPoolResolvesWithDNS(t *testing.T) {
	cert := newCert(t)
	c1, c2, port := loopbackPair(t, cert)
	dns := newFakeDNS(t, "127.0.0.1", "127.0.0.2")
	if ips, err := dns.resolver()(t.Context(), "ctl.wisp.test"); err != nil || len(ips) != 2 {
		t.Fatalf("the test's DNS answers %v %v", ips, err)
	}
	s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
	a := newPoolAgent(t, PoolConfig{Controllers: []string{"ctl.wisp.test:" + port}, Resolve: dns.resolver()},
		&state.Identity{AgentID: "agent-1", Credential: []byte("cred"), Controller: bytes.Clone(c1.pin[:])})
	a.run(t)
	for _, ch := range []<-chan *session{s1, s2} {
		s := next(t, ch, "a link per address")
		if !presents(s.hello, "agent-1", "cred") {
			t.Fatalf("hello %+v", s.hello)
		}
		s.welcome(t, "agent-1", nil)
	}
	testwait.For(t, 10*time.Second, "both links up", func() bool { return a.connectedTo(c1.addr) && a.connectedTo(c2.addr) })
}

// batchOn waits for the next stream the agent opens on s and reads its
// OutboxBatch.
func batchOn(s *session) <-chan *protocol.OutboxBatch {
	ch := make(chan *protocol.OutboxBatch, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		str, err := s.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		msg, err := protocol.ReadMsg(str, protocol.MaxFrameSize)
		if b, ok := msg.(*protocol.OutboxBatch); err == nil && ok {
			ids := []string{}
			for _, e := range b.Entries {
				ids = append(ids, e.ActivationID)
			}
			s.acks = append(s.acks, func() { protocol.WriteMsg(str, &protocol.OutboxAck{IDs: ids}); str.Close() })
			ch <- b // after acks: the receiver may ack
		}
	}()
	return ch
}

// TestOutboxOneDrainer: with two links up, one sends the outbox and the
// other does not; when the draining link's session ends with its batch
// unacknowledged, the other link sends it.
func TestOutboxOneDrainer(t *testing.T) {
	cert := newCert(t)
	c1, c2 := newControllerAt(t, cert, "127.0.0.1:0"), newControllerAt(t, cert, "127.0.0.1:0")
	s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
	a := newPoolAgent(t, PoolConfig{Controllers: []string{c1.addr, c2.addr}},
		&state.Identity{AgentID: "agent-1", Credential: []byte("cred"), Controller: bytes.Clone(c1.pin[:])})
	for _, id := range []string{"A1", "A2", "A3"} {
		if err := a.st.AppendOutbox(&protocol.OutboxEntry{ActivationID: id, Module: "_", Function: "f", Source: "local-api"}); err != nil {
			t.Fatal(err)
		}
	}
	a.run(t)
	x, y := next(t, s1, "link 1"), next(t, s2, "link 2")
	bx, by := batchOn(x), batchOn(y)
	x.welcome(t, "agent-1", nil)
	y.welcome(t, "agent-1", nil)
	var drainer, other *session
	var otherBatch <-chan *protocol.OutboxBatch
	select {
	case b := <-bx:
		drainer, other, otherBatch = x, y, by
		if len(b.Entries) != 3 {
			t.Fatalf("batch of %d entries", len(b.Entries))
		}
	case b := <-by:
		drainer, other, otherBatch = y, x, bx
		if len(b.Entries) != 3 {
			t.Fatalf("batch of %d entries", len(b.Entries))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no outbox batch")
	}
	select {
	case <-otherBatch:
		t.Fatal("two links sent the outbox at once")
	case <-time.After(500 * time.Millisecond):
	}
	drains := 0
	for _, l := range a.pool.Status() {
		if l.DrainsOutbox {
			drains++
		}
	}
	if drains != 1 {
		t.Fatalf("%d links say they drain the outbox: %+v", drains, a.pool.Status())
	}
	// The drainer's controller goes away before acknowledging.
	drainer.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "gone")
	select {
	case b := <-otherBatch:
		if len(b.Entries) != 3 || b.Entries[0].ActivationID != "A1" {
			t.Fatalf("the other link sent %+v", b.Entries)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the other link did not take the outbox over")
	}
	other.ack()
	testwait.For(t, 10*time.Second, "the outbox to empty", func() bool { return a.st.OutboxLen() == 0 })
}

// TestControllerShutdownReconnects: a controller that closes with
// CloseShutdown (a rolling restart) is dialled again after a spread-out
// delay within RestartDelay, and the link logs no error.
func TestControllerShutdownReconnects(t *testing.T) {
	c := newController(t)
	a := newAgent(t, c, c.token("secret-of-16-bytes"))
	a.link.cfg.RestartDelay = time.Second
	a.run(t)
	s := c.accept(t)
	s.welcome(t, "agent-1", []byte("cred"))
	testwait.For(t, 10*time.Second, "the link to be up", a.link.Connected)
	closed := time.Now()
	s.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "controller shutting down")
	s2 := c.accept(t)
	if d := time.Since(closed); d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("reconnected after %v, want between a fifth of RestartDelay and about RestartDelay", d)
	}
	if !presents(s2.hello, "agent-1", "cred") {
		t.Fatalf("hello %+v", s2.hello)
	}
	log := a.log.String()
	if !strings.Contains(log, "controller shutting down; reconnecting later") || strings.Contains(log, "level=WARN") {
		t.Fatalf("log after a controller's shutdown:\n%s", log)
	}
}

// TestSupersededStandsBy: two addresses of one controller (it replaces an
// agent's older session with CloseSuperseded, as the fleet does): the
// links settle with one session and the other link standing by, instead
// of replacing each other forever; when the session ends, the link
// standing by connects.
func TestSupersededStandsBy(t *testing.T) {
	cert := newCert(t)
	c1, c2, port := loopbackPair(t, cert)
	s1, s2 := acceptAll(t, c1), acceptAll(t, c2)
	a := newPoolAgent(t, PoolConfig{Controllers: []string{"ctl.wisp.test:" + port},
		Resolve: func(context.Context, string) ([]string, error) { return []string{"127.0.0.1", "127.0.0.2"}, nil }},
		&state.Identity{AgentID: "agent-1", Credential: []byte("cred"), Controller: bytes.Clone(c1.pin[:])})
	a.run(t)
	var current *session
	sessions := 0
	lastAt := time.Now()
	// One controller: each new session replaces the one before.
	serve := func(d time.Duration) {
		for end := time.After(d); ; {
			var s *session
			select {
			case s = <-s1:
			case s = <-s2:
			case <-end:
				return
			}
			sessions++
			lastAt = time.Now()
			s.send(t, &protocol.Welcome{AgentID: "agent-1", ControllerID: "ctl-1", HeartbeatIntervalMS: 50, ProtocolVersion: protocol.Version})
			if current != nil {
				current.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseSuperseded), "agent connected again")
			}
			current = s
		}
	}
	serve(4 * time.Second)
	if sessions > 4 || time.Since(lastAt) < 2*time.Second {
		t.Fatalf("%d sessions, the last %v ago: the links keep replacing each other; log:\n%s", sessions, time.Since(lastAt), a.log)
	}
	var up, standby int
	for _, l := range a.pool.Status() {
		if l.Connected {
			up++
		}
		if strings.HasPrefix(l.Note, "standby: controller ctl-1") {
			standby++
		}
	}
	if up != 1 || standby != 1 {
		t.Fatalf("links %+v, want one up and one standing by", a.pool.Status())
	}
	// The controller drops the session: a link connects again.
	before := sessions
	current.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseNoError), "path gone")
	current = nil
	serve(3 * time.Second)
	if sessions == before {
		t.Fatal("no link connected after the session ended")
	}
	testwait.For(t, 10*time.Second, "a link up", a.pool.Connected)
}
