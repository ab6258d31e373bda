package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
)

// shareIdentity copies what makes controllers one cluster, until it lives
// in the store: the key agents pin and the key sealing secrets (and the
// admin token file, which the harness reads).
func shareIdentity(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range []string{"controller.crt", "controller.key", "secrets.key", "admin.token"} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestControllerRollingRestart: two controller processes on one Postgres
// and an agent given both. SIGTERM to one while invocations run through
// it: /readyz answers 503 at once, new connections are refused, its idle
// keep-alive connections are closed, the other controller keeps serving,
// every invocation in flight gets its answer (with Connection: close), and
// only then are the agents' sessions closed, with the code that says the
// controller is shutting down: the agent comes back to it when it restarts
// on its address, without logging an error.
func TestControllerRollingRestart(t *testing.T) {
	var hits atomic.Int64
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-time.After(60 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"pong":true}`)
	}))
	defer slow.Close()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	dsn := freshSchema(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startController(t, dirA, dsn, "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--shutdown-timeout", "60s")
	metricsA := a.Await(`msg=metrics addr=(\S+)`)
	shareIdentity(t, dirA, dirB)
	b := startController(t, dirB, dsn, "127.0.0.1:0")
	agent := startEnv(t, "wisp-agent edge", tokenEnv(a.joinToken(t, dsn)), "run", "--controllers", a.quic+","+b.quic, "--data-dir", t.TempDir(),
		"--agent-name", "edge", "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0", "--max-per-function", "8")
	waitFor(t, "the agent on both controllers", func() bool {
		_, onA := a.connected(t)["edge"]
		_, onB := b.connected(t)["edge"]
		return onA && onB
	})
	a.upload(t, "_", "slow", "http", map[string]string{"config": `{"allow_hosts":["127.0.0.1"]}`, "wait_for_workers": "true"})
	a.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})

	restAddr := strings.TrimPrefix(a.url, "http://")
	// An idle keep-alive connection, as a client's pool holds.
	idle, err := net.Dial("tcp", restAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: wisp\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz on a keep-alive connection: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// Invocations in flight through A: their function waits on the slow
	// server until the test releases it.
	const n = 6
	type answer struct {
		status int
		body   string
		close  bool
		err    error
	}
	answers := make(chan answer, n)
	args := `{"args":{"u":"` + slow.URL + `/x"}}`
	for range n {
		go func() {
			req, _ := http.NewRequest("POST", a.url+"/v1/fn/_/slow", strings.NewReader(args))
			req.Header.Set("Authorization", "Bearer "+a.admin)
			req.Header.Set("Content-Type", "application/json")
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			answers <- answer{status: resp.StatusCode, body: string(b), close: resp.Close, err: err}
		}()
	}
	waitFor(t, "the invocations to run", func() bool { return hits.Load() == n })

	a.Cmd.Process.Signal(syscall.SIGTERM)
	wantProbe(t, 5*time.Second, "http://"+metricsA+"/readyz", 503, "not ready: stopping\n")
	testwait.Until(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", restAddr)
		if err == nil {
			c.Close()
			return errors.New("a new connection was accepted after SIGTERM")
		}
		return nil
	})
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the idle keep-alive connection after SIGTERM: %v, want it closed", err)
	}
	// The other controller serves meanwhile.
	if status, body := b.invoke(t, "_", "hello", `{"args":{"name":"Q"}}`); status != 200 || body != `{"data":{"payload":"Hello Q!"}}` {
		t.Fatalf("invoke through B while A drains: %d %s", status, body)
	}
	select {
	case ans := <-answers:
		t.Fatalf("an invocation ended before its function returned: %+v", ans)
	case <-a.Done():
		t.Fatal("A exited with invocations in flight")
	case <-time.After(300 * time.Millisecond):
	}

	close(release)
	released = true
	for range n {
		select {
		case ans := <-answers:
			if ans.err != nil || ans.status != 200 || ans.body != `{"data":{"pong":true}}` || !ans.close {
				t.Errorf("invocation in flight at SIGTERM: %+v, want 200 with Connection: close", ans)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("an invocation in flight at SIGTERM got no answer")
		}
	}
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("A did not exit after its invocations returned")
	}
	if code := a.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("A exited with %d", code)
	}
	if log := a.Log(); strings.Contains(log, "invocations still running") || !strings.Contains(log, `msg="stopped; closing the store"`) {
		t.Fatalf("A's log:\n%s", log)
	}
	agent.Await(`controller shutting down; reconnecting later`)

	// A restarts on its QUIC address: the agent comes back to it.
	a2 := startController(t, dirA, dsn, a.quic)
	testwait.For(t, 60*time.Second, "the agent back on A", func() bool {
		_, ok := a2.connected(t)["edge"]
		return ok
	})
	if status, body := a2.invoke(t, "_", "hello", `{"args":{"name":"Q"}}`); status != 200 {
		t.Fatalf("invoke through A after its restart: %d %s", status, body)
	}
	// The agent took the restart for what it was: no warning, no error
	// about A.
	warn := regexp.MustCompile(`level=(WARN|ERROR).*controller=` + regexp.QuoteMeta(a.quic))
	if m := warn.FindString(agent.Log()); m != "" {
		t.Fatalf("the agent logged about A's restart: %s", m)
	}
}
