package server

import (
	"context"
	"encoding/json"
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

	"github.com/wispfn/wisp/agent/node"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// testServer is a controller run by Run in this process.
type testServer struct {
	url, quic string
	stop      func() error
}

// startServer runs a controller on dir and the Postgres at dsn, its QUIC
// listener at quicAddr; the test's end stops it.
func startServer(t *testing.T, name, dir, dsn, quicAddr string) *testServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", QUICListen: quicAddr, DataDir: dir, DatabaseURL: dsn, InstanceID: name,
			MaxUploadBytes: 16 << 20, ShutdownTimeout: 10 * time.Second, InvokeTimeout: 30 * time.Second},
			log, func(rest, quic net.Addr) { up <- [2]net.Addr{rest, quic} })
	}()
	s := &testServer{stop: sync.OnceValue(func() error { cancel(); return <-done })}
	t.Cleanup(func() { s.stop() })
	select {
	case a := <-up:
		s.url, s.quic = "http://"+a[0].String(), a[1].String()
	case err := <-done:
		t.Fatalf("controller %s: %v", name, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("controller %s did not start", name)
	}
	return s
}

// shareIdentity copies the files that make a controller one of a cluster:
// the key agents pin and the key sealing secrets (until they live in the
// store).
func shareIdentity(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range []string{"controller.crt", "controller.key", "secrets.key"} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// agentConnected reports whether the controller at url has the agent
// named name connected.
// agentConnected: the agent named name has a session with the controller
// whose instance id is ctl (GET /v1/agents of the cluster, through url).
func agentConnected(t *testing.T, url, admin, name, ctl string) bool {
	t.Helper()
	code, b := testhttp.Do(t, "GET", url+"/v1/agents", admin, "", nil)
	if code != 200 {
		t.Fatalf("GET /v1/agents: %d %s", code, b)
	}
	var env struct {
		Data []struct {
			Name        string   `json:"name"`
			Controllers []string `json:"controllers"`
		}
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	for _, a := range env.Data {
		if a.Name == name && slices.Contains(a.Controllers, ctl) {
			return true
		}
	}
	return false
}

// freeAddr is a loopback TCP address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAgentServesEveryController: two controllers on one Postgres, sharing
// their identity, and one agent given both. The agent joins once and has a
// session with each; a function created through one is invoked through
// both. With one controller stopped, invocations through the other and the
// agent's local API still work; when it is back on its address, the
// agent's link to it comes back and it invokes again.
func TestAgentServesEveryController(t *testing.T) {
	dsn := testpg.Schema(t, 8)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startServer(t, "ctl-a", dirA, dsn, "127.0.0.1:0")
	shareIdentity(t, dirA, dirB)
	b := startServer(t, "ctl-b", dirB, dsn, "127.0.0.1:0")
	admin := readFile(t, filepath.Join(dirA, "admin.token"))

	st, body := testhttp.Do(t, "POST", a.url+"/v1/admin/tokens", admin, "application/json", strings.NewReader(`{}`))
	if st != 201 {
		t.Fatalf("join token: %d %s", st, body)
	}
	var tok struct{ Data struct{ Token string } }
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatal(err)
	}

	agentDir, localAPI := t.TempDir(), freeAddr(t)
	actx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		log := slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "agent")
		}
		agentDone <- node.Run(actx, node.Config{Controllers: []string{a.quic, b.quic}, JoinToken: tok.Data.Token, DataDir: agentDir,
			Name: "edge", LocalAPI: localAPI, Timeout: 10 * time.Second, MemoryMiB: 64}, log)
	}()
	t.Cleanup(func() {
		stopAgent()
		select {
		case err := <-agentDone:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the agent did not stop")
		}
	})
	testwait.For(t, 30*time.Second, "the agent connected to both controllers", func() bool {
		return agentConnected(t, a.url, admin, "edge", "ctl-a") && agentConnected(t, b.url, admin, "edge", "ctl-b")
	})

	localToken := readFile(t, filepath.Join(agentDir, "local.token"))
	report := func() status.Report {
		req, _ := http.NewRequest("GET", "http://"+localAPI+"/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+localToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep struct{ Data status.Report }
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("status %s: %v", b, err)
		}
		return rep.Data
	}
	links := func() []status.Link { return report().Links }
	up := func(addr string) bool {
		for _, l := range links() {
			if l.Controller == addr {
				return l.Connected
			}
		}
		t.Fatalf("no link to %s in %+v", addr, links())
		return false
	}
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "hello_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	create := func(url, name string) {
		form, ct := testhttp.Multipart(map[string]string{"name": name}, "code", name+".wasm", code)
		if status, body := testhttp.Do(t, "POST", url+"/v1/fn/_", admin, ct, form); status != 201 {
			t.Fatalf("create %s: %d %s", name, status, body)
		}
	}
	desired := func(want ...string) func() bool {
		return func() bool {
			names := map[string]bool{}
			for _, f := range report().Desired {
				names[f.Name] = true
			}
			for _, n := range want {
				if !names[n] {
					return false
				}
			}
			return true
		}
	}
	create(a.url, "hello")
	testwait.For(t, 10*time.Second, "A's desired set with hello", desired("hello"))
	// Each controller sends the agent the set it reads from the store: B's
	// first one, read when the agent connected, may still arrive after A's
	// with hello. B corrects it at its next sync, here after a change made
	// through it (with the store's change feed, after every change), and
	// that set is the last one sent.
	create(b.url, "hello2")
	testwait.For(t, 10*time.Second, "B's desired set with both functions", desired("hello", "hello2"))
	invoke := func(url string) (int, string) {
		status, body := testhttp.Do(t, "POST", url+"/v1/fn/_/hello", admin, "application/json", strings.NewReader(`{"args":{"name":"Q"}}`))
		return status, string(body)
	}
	const want = `{"data":{"payload":"Hello Q!"}}`
	for _, url := range []string{a.url, b.url} {
		if status, body := invoke(url); status != 200 || body != want {
			t.Fatalf("invoke through %s: %d %s", url, status, body)
		}
	}

	// A stops; B and the local API keep serving.
	if err := a.stop(); err != nil {
		t.Fatalf("controller A: %v", err)
	}
	for range 5 {
		if status, body := invoke(b.url); status != 200 || body != want {
			t.Fatalf("invoke through B with A down: %d %s", status, body)
		}
	}
	if status, body := testhttp.Do(t, "POST", "http://"+localAPI+"/v1/fn/_/hello", localToken, "application/json", strings.NewReader(`{"args":{"name":"Q"}}`)); status != 200 {
		t.Fatalf("local invoke with A down: %d %s", status, body)
	}
	if up(a.quic) || !up(b.quic) {
		t.Fatalf("links with A down: %+v", links())
	}

	// A comes back on its address: the agent's link to it reconnects.
	a2 := startServer(t, "ctl-a2", dirA, dsn, a.quic)
	testwait.For(t, 30*time.Second, "the agent back on A", func() bool { return agentConnected(t, a2.url, admin, "edge", "ctl-a2") })
	if status, body := invoke(a2.url); status != 200 || body != want {
		t.Fatalf("invoke through A back: %d %s", status, body)
	}
	if !up(a.quic) || !up(b.quic) {
		t.Fatalf("links with A back: %+v", links())
	}
}
