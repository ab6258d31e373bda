package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

// Two controller servers on one Postgres schema, in this process: the
// cluster's tests (issue 15, point 2) and the propagation benchmark.

// testController is a controller server run by a test.
type testController struct {
	id    string
	dir   string
	url   string // REST, plain HTTP
	quic  string
	admin string
	stop  func()
}

// dataDirFiles are what controllers of one cluster share from a data dir:
// the identity agents pin, the key sealing secrets, the admin token.
var dataDirFiles = []string{"controller.crt", "controller.key", "secrets.key", auth.AdminTokenFile}

// startClusterController runs a controller on dsn with instance id id; a
// non-empty like is the data dir of a controller of the same cluster,
// whose shared files it copies first.
func startClusterController(t testing.TB, dsn, id, like string) *testController {
	t.Helper()
	dir := t.TempDir()
	for _, name := range dataDirFiles {
		if like == "" {
			break
		}
		b, err := os.ReadFile(filepath.Join(like, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	type addrs struct{ rest, quic net.Addr }
	up := make(chan addrs, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", QUICListen: "127.0.0.1:0", DataDir: dir, DatabaseURL: dsn,
			MaxUploadBytes: 16 << 20, ShutdownTimeout: 5 * time.Second, InvokeTimeout: 10 * time.Second, InstanceID: id},
			clusterLogger(t, id), func(rest, quic net.Addr) { up <- addrs{rest, quic} })
	}()
	var a addrs
	select {
	case a = <-up:
	case err := <-done:
		t.Fatalf("controller %s: %v", id, err)
	}
	tok, err := auth.ReadTokenFile(filepath.Join(dir, auth.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	c := &testController{id: id, dir: dir, url: "http://" + a.rest.String(), quic: a.quic.String(), admin: tok}
	c.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller %s: %v", id, err)
		}
	})
	t.Cleanup(c.stop)
	return c
}

func clusterLogger(t testing.TB, id string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("controller", id)
	}
	return slog.New(slog.DiscardHandler)
}

// do sends a request to c's REST API as the admin and decodes the
// answer's data into out (when not nil); it fails the test unless the
// status is want.
func (c *testController) do(t testing.TB, method, path, contentType string, body io.Reader, want int, out any) {
	t.Helper()
	status, b := testhttp.Do(t, method, c.url+path, c.admin, contentType, body)
	if status != want {
		t.Fatalf("%s %s on %s: %d %s, want %d", method, path, c.id, status, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, &struct{ Data any }{out}); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

func wasm(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putFunction creates (or, with update, replaces) function _/name from
// the fixture through c's REST API.
func (c *testController) putFunction(t testing.TB, name, fixture string, update bool) {
	t.Helper()
	if update {
		body, ct := testhttp.Multipart(nil, "code", fixture+".wasm", wasm(t, fixture))
		c.do(t, http.MethodPut, "/v1/fn/_/"+name, ct, body, http.StatusOK, nil)
		return
	}
	body, ct := testhttp.Multipart(map[string]string{"name": name}, "code", fixture+".wasm", wasm(t, fixture))
	c.do(t, http.MethodPost, "/v1/fn/_", ct, body, http.StatusCreated, nil)
}

// testAgent is a real agent (runtime, state, executor, QUIC link) with a
// link to one controller; desired counts the desired sets it stored.
type testAgent struct {
	link  *link.Link
	state *state.State
	done  chan error
	stop  func()

	mu      sync.Mutex
	desired []desiredAt
}

type desiredAt struct {
	at  time.Time
	fns []protocol.DesiredFunction
}

func startTestAgent(t testing.TB, quicAddr, joinToken, name string) *testAgent {
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
	a := &testAgent{state: st, done: make(chan error, 1)}
	l, err := link.New(link.Config{Addr: quicAddr, JoinToken: joinToken, State: st, Executor: executor.New(rt, st, nil, nil), Name: name,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: clusterLogger(t, name),
		OnDesired: func([]protocol.DesiredFunction, bool) {
			// A delta brings only what changed: the set is the one stored
			// now (changes are stored and reported one at a time).
			fns, err := st.Desired()
			if err != nil {
				t.Errorf("reading the desired set: %v", err)
				return
			}
			a.mu.Lock()
			a.desired = append(a.desired, desiredAt{time.Now(), fns})
			a.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	a.link = l
	ctx, cancel := context.WithCancel(context.Background())
	go func() { a.done <- l.Run(ctx) }()
	a.stop = sync.OnceFunc(func() {
		cancel()
		<-a.done
		rt.Close(context.Background())
		st.Close()
	})
	t.Cleanup(a.stop)
	return a
}

// sets returns how many desired sets the agent stored and the last one's
// functions as "name@digest".
func (a *testAgent) sets() (int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.desired) == 0 {
		return 0, nil
	}
	var fns []string
	for _, f := range a.desired[len(a.desired)-1].fns {
		fns = append(fns, f.Name+"@"+f.Digest)
	}
	slices.Sort(fns)
	return len(a.desired), fns
}

// waitSet waits until the agent's last desired set is want (names at
// digests) and returns when it stored it.
func (a *testAgent) waitSet(t testing.TB, d time.Duration, want ...string) time.Time {
	t.Helper()
	slices.Sort(want)
	testwait.For(t, d, fmt.Sprintf("desired set %v", want), func() bool {
		n, got := a.sets()
		return n > 0 && slices.Equal(got, want)
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.desired) - 1; i > 0; i-- {
		var fns []string
		for _, f := range a.desired[i-1].fns {
			fns = append(fns, f.Name+"@"+f.Digest)
		}
		slices.Sort(fns)
		if !slices.Equal(fns, want) {
			return a.desired[i].at
		}
	}
	return a.desired[0].at
}

func digestOf(t testing.TB, fixture string) string { return runtime.Digest(wasm(t, fixture)) }

// joinToken makes a join token through c.
func (c *testController) joinToken(t testing.TB) string {
	t.Helper()
	var tok fleet.JoinTokenInfo
	c.do(t, http.MethodPost, "/v1/admin/tokens", "application/json", strings.NewReader(`{"uses":10}`), http.StatusCreated, &tok)
	return tok.Token
}

func (c *testController) agents(t testing.TB) []fleet.AgentInfo {
	t.Helper()
	var as []fleet.AgentInfo
	c.do(t, http.MethodGet, "/v1/agents", "", nil, http.StatusOK, &as)
	return as
}

// clusterOfTwo starts controllers a and b on one fresh schema.
func clusterOfTwo(t testing.TB) (a, b *testController, dsn string) {
	t.Helper()
	dsn = testpg.Schema(t, 8)
	a = startClusterController(t, dsn, "ctl-a", "")
	b = startClusterController(t, dsn, "ctl-b", a.dir)
	return a, b, dsn
}

// TestClusterFollowsChanges: an agent connected only to controller B gets
// the desired-set changes of functions created, updated and deleted
// through controller A within a second; GET /v1/agents on either shows it
// with B as its controller; forged notifications change nothing; an agent
// removed through A is disconnected from B.
func TestClusterFollowsChanges(t *testing.T) {
	t.Parallel()
	a, b, dsn := clusterOfTwo(t)
	agent := startTestAgent(t, b.quic, a.joinToken(t), "edge") // a token made by A works on B: one identity
	testwait.For(t, 15*time.Second, "the agent connected to B", func() bool { return agent.link.Status().Connected })
	agent.waitSet(t, 10*time.Second)

	// Each change committed through A reaches the agent through B's feed.
	// The commit's instant is when a third listener on the database got
	// its notification (the REST call's own time, an upload's validation
	// under -race included, is not propagation).
	commits := watchCommits(t, dsn)
	measure := func(what, fn string, change func(), want ...string) time.Duration {
		t.Helper()
		start := time.Now()
		change()
		held := agent.waitSet(t, 10*time.Second, want...)
		got := held.Sub(commits.first(t, start, store.Change{Kind: store.ChangeFunctions, Key: "_/" + fn}))
		t.Logf("%s through A: the agent of B held the new desired set %v after the commit (%v after the REST call began)",
			what, got.Round(time.Millisecond), held.Sub(start).Round(time.Millisecond))
		if got > time.Second {
			t.Errorf("%s through A reached the agent of B %v after its commit, want within 1s", what, got)
		}
		return got
	}
	hello, echo := digestOf(t, "hello_c"), digestOf(t, "echo_rust")
	measure("create", "hello", func() { a.putFunction(t, "hello", "hello_c", false) }, "hello@"+hello)
	measure("update", "hello", func() { a.putFunction(t, "hello", "echo_rust", true) }, "hello@"+echo)
	measure("create another", "two", func() { a.putFunction(t, "two", "hello_c", false) }, "hello@"+echo, "two@"+hello)
	measure("delete", "two", func() { a.do(t, http.MethodDelete, "/v1/fn/_/two", "", nil, http.StatusNoContent, nil) }, "hello@"+echo)
	// B pushed the code its agent lacked, though the function was made on A.
	testwait.For(t, 10*time.Second, "the code on the agent", func() bool { return agent.state.HasCode(echo) })
	// Code no function uses any more after a delete through A (whose Drop
	// goes to A's agents only) leaves the agent of B too.
	trap := digestOf(t, "trap")
	a.putFunction(t, "solo", "trap", false)
	testwait.For(t, 10*time.Second, "solo's code on the agent", func() bool { return agent.state.HasCode(trap) })
	a.do(t, http.MethodDelete, "/v1/fn/_/solo", "", nil, http.StatusNoContent, nil)
	start := time.Now()
	testwait.For(t, 5*time.Second, "solo's code dropped by the agent", func() bool { return !agent.state.HasCode(trap) })
	t.Logf("deleted through A: the agent of B dropped its code after %v", time.Since(start).Round(time.Millisecond))

	// Both controllers list the agent as B's, B with what its session knows.
	var id string
	testwait.Until(t, 5*time.Second, func() error {
		for _, c := range []*testController{a, b} {
			as := c.agents(t)
			if len(as) != 1 || !as[0].Connected || !slices.Equal(as[0].Controllers, []string{"ctl-b"}) || as[0].Name != "edge" || as[0].Engine == "" {
				return fmt.Errorf("GET /v1/agents on %s: %+v", c.id, as)
			}
			id = as[0].ID
		}
		if as := b.agents(t); as[0].Digests == 0 {
			return fmt.Errorf("B shows no code on its agent: %+v", as[0])
		}
		return nil
	})

	// Forged notifications, by hand in SQL: garbage is ignored; valid-looking
	// ones make the controllers re-read, which changes nothing (the agent
	// is still there, connected, and gets no desired set).
	sets, _ := agent.sets()
	conn, _ := testpg.Admin(t)
	defer conn.Close(context.Background())
	schema := schemaOf(t, dsn)
	for _, p := range []string{"garbage", "", strings.Repeat("x", 7999), schema + ":agents:" + id, schema + ":agents:",
		schema + ":all:", schema + ":functions:" + strings.Repeat("k", 5000), schema + ":secrets:_/NOPE", "other:agents:" + id} {
		if _, err := conn.Exec(t.Context(), `SELECT pg_notify('wisp_changes', $1)`, p); err != nil {
			t.Fatalf("notify: %v", err)
		}
	}
	// A real change after them: the agent's next set is this one.
	a.putFunction(t, "three", "hello_c", false)
	agent.waitSet(t, 5*time.Second, "hello@"+echo, "three@"+hello)
	if n, _ := agent.sets(); n != sets+1 {
		t.Errorf("the agent got %d desired sets after the forged notifications and one change, want 1", n-sets)
	}
	if !agent.link.Status().Connected {
		t.Fatal("the agent lost its session after forged notifications")
	}

	// Cordoned through A: B stops scheduling on it at once; uncordoned, it
	// schedules again.
	invokeB := func() int {
		status, _ := testhttp.Do(t, http.MethodPost, b.url+"/v1/fn/_/hello", b.admin, "application/json", strings.NewReader(`{"args":{}}`))
		return status
	}
	if st := invokeB(); st != http.StatusOK {
		t.Fatalf("invoke through B: %d", st)
	}
	start = time.Now()
	a.do(t, http.MethodPut, "/v1/admin/agents/"+id+"/cordon", "", nil, http.StatusOK, nil)
	testwait.For(t, 5*time.Second, "B refusing to schedule on the cordoned agent", func() bool { return invokeB() == http.StatusServiceUnavailable })
	t.Logf("cordoned through A: B stopped scheduling on the agent after %v", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > time.Second {
		t.Errorf("the cordon reached B after %v, want within 1s", d)
	}
	a.do(t, http.MethodDelete, "/v1/admin/agents/"+id+"/cordon", "", nil, http.StatusOK, nil)
	testwait.For(t, 5*time.Second, "B scheduling on the uncordoned agent", func() bool { return invokeB() == http.StatusOK })

	// Removed through A: B closes its session, and the agent, its token
	// kept, stays out (it is refused and its link ends).
	start = time.Now()
	a.do(t, http.MethodDelete, "/v1/admin/agents/"+id, "", nil, http.StatusNoContent, nil)
	testwait.For(t, 5*time.Second, "the agent's session with B closed", func() bool { return !agent.link.Status().Connected })
	t.Logf("removed through A: the agent's session with B closed after %v", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > time.Second {
		t.Errorf("the removal reached B after %v, want within 1s", d)
	}
	for _, c := range []*testController{a, b} {
		if as := c.agents(t); len(as) != 0 {
			t.Fatalf("GET /v1/agents on %s after the removal: %+v", c.id, as)
		}
	}
}

// schemaOf is the schema a testpg DSN's connections use.
func schemaOf(t testing.TB, dsn string) string {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var s string
	if err := pool.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClusterControllerLeaves: a controller that stops takes its links
// with it: the other lists its agent as connected to no controller.
func TestClusterControllerLeaves(t *testing.T) {
	t.Parallel()
	a, b, _ := clusterOfTwo(t)
	startTestAgent(t, b.quic, a.joinToken(t), "edge")
	testwait.Until(t, 15*time.Second, func() error {
		if as := a.agents(t); len(as) != 1 || !slices.Equal(as[0].Controllers, []string{"ctl-b"}) || as[0].Engine == "" {
			return fmt.Errorf("GET /v1/agents on A: %+v", as)
		}
		return nil
	})
	b.stop() // its agent keeps trying to reconnect to it
	testwait.Until(t, 5*time.Second, func() error {
		if as := a.agents(t); len(as) != 1 || as[0].Connected || len(as[0].Controllers) != 0 {
			return fmt.Errorf("GET /v1/agents on A after B stopped: %+v", as)
		}
		return nil
	})
}

// commitTimes records when a listener of its own on the database got each
// change: the instant a change committed, give or take NOTIFY's delivery.
type commitTimes struct {
	mu sync.Mutex
	at []changeAt
}

type changeAt struct {
	c  store.Change
	at time.Time
}

func watchCommits(t testing.TB, dsn string) *commitTimes {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err := store.OpenPostgres(ctx, dsn, nil)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	c := &commitTimes{}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.WatchChanges(wctx, func(ch store.Change) {
			c.mu.Lock()
			c.at = append(c.at, changeAt{ch, time.Now()})
			c.mu.Unlock()
		})
	}()
	t.Cleanup(func() { stop(); <-done; st.Close() })
	c.first(t, time.Time{}, store.Change{Kind: store.ChangeAll}) // it listens
	return c
}

// first waits for want to be reported after after and returns when.
func (c *commitTimes) first(t testing.TB, after time.Time, want store.Change) time.Time {
	t.Helper()
	var at time.Time
	testwait.For(t, 10*time.Second, fmt.Sprintf("the commit of %v", want), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, x := range c.at {
			if x.c == want && x.at.After(after) {
				at = x.at
				return true
			}
		}
		return false
	})
	return at
}
