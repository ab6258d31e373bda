package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
)

// syncBuffer is a writer the test reads while the CLI writes to it.
type syncBuffer struct {
	mu   sync.Mutex
	b    strings.Builder
	more chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	select {
	case s.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsAgainstController: against a real controller and agent,
// `fn invoke -o json` names the activation, `activation get` shows it,
// `activation list --follow` and `fn logs --follow` print a new
// invocation within a second (the latency is printed), and `fn logs`
// prints each of its log lines once, in order.
func TestLogsAgainstController(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls", "off")
	url := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	quic := ctl.Await(`msg="QUIC listening" addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	e := env{"XDG_CONFIG_HOME": t.TempDir(), "WISP_HOST": url, "WISP_TOKEN": strings.TrimSpace(string(admin))}
	ok := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, e, args...)
		if code != 0 {
			t.Fatalf("wisp %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	join := strings.TrimSpace(ok("token", "create"))
	agent := startProc(t, "wisp-agent", "run", "--controllers", quic, "--join-token", join, "--data-dir", t.TempDir(),
		"--agent-name", "edge1", "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0")
	agent.Await(`msg=connected`)
	ok("fn", "upload", "logger", filepath.Join("..", "..", "testdata", "wasm", "log.wasm"), "--wait")

	// Followers, started before the invocation.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := func(args ...string) (*syncBuffer, chan int) {
		out := &syncBuffer{more: make(chan struct{}, 1)}
		done := make(chan int, 1)
		go func() {
			var stderr strings.Builder
			code := Run(ctx, args, strings.NewReader(""), out, &stderr, e.get)
			if code != 0 && ctx.Err() == nil {
				t.Errorf("wisp %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
			}
			done <- code
		}()
		return out, done
	}
	list, listDone := follow("activation", "list", "--follow", "-o", "json", "-f", "logger", "--agent", "edge1")
	logs, logsDone := follow("fn", "logs", "logger", "--follow", "-o", "json")
	time.Sleep(500 * time.Millisecond) // let both streams open (a missed one fails below)

	t0 := time.Now()
	var inv struct {
		Activation string          `json:"activation"`
		Output     json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal([]byte(ok("fn", "invoke", "logger", "-o", "json")), &inv); err != nil || len(inv.Activation) != 26 || string(compactOrNull(inv.Output)) != `{"logged":2}` {
		t.Fatalf("fn invoke -o json: %+v %v", inv, err)
	}
	for name, out := range map[string]*syncBuffer{"activation list --follow": list, "fn logs --follow": logs} {
		for !strings.Contains(out.String(), inv.Activation) {
			select {
			case <-out.more:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s printed nothing of %s within 5s: %q", name, inv.Activation, out.String())
			}
		}
		latency := time.Since(t0)
		t.Logf("%s printed the new activation %s after the invoke began", name, latency)
		if latency > time.Second+500*time.Millisecond { // the invoke itself, then within 1 s
			t.Fatalf("%s took %s", name, latency)
		}
		var a activation
		line, _, _ := strings.Cut(out.String(), "\n")
		if err := json.Unmarshal([]byte(line), &a); err != nil || a.ID != inv.Activation || a.Function != "logger" || a.Status != "success" {
			t.Fatalf("%s printed %q", name, out.String())
		}
	}
	cancel()
	<-listDone
	<-logsDone

	if out := ok("activation", "get", inv.Activation); !strings.Contains(out, inv.Activation) || !strings.Contains(out, `{"logged":2}`) {
		t.Fatalf("activation get: %s", out)
	}
	if out := ok("activation", "list", "--agent", "edge1", "--status", "success", "--source", "api"); !strings.Contains(out, inv.Activation) {
		t.Fatalf("activation list with filters: %s", out)
	}
	if out := ok("activation", "list", "--agent", "nobody"); strings.Contains(out, inv.Activation) {
		t.Fatalf("activation list --agent nobody: %s", out)
	}

	// The log lines themselves: the agent sends them, the store keeps
	// them, the API shows them.
	t.Run("lines", func(t *testing.T) {
		var a activation
		if err := json.Unmarshal([]byte(ok("activation", "get", inv.Activation, "-o", "json")), &a); err != nil {
			t.Fatal(err)
		}
		if len(a.Logs) != 2 {
			t.Fatalf("the activation holds %d log lines, want 2: %+v", len(a.Logs), a.Logs)
		}
		ok("fn", "invoke", "logger")
		// The recorder stores the new activation after the answer: wait
		// for its lines, then check them all.
		var lines []string
		testwait.For(t, 10*time.Second, "the second activation's lines", func() bool {
			lines = lines[:0]
			sc := bufio.NewScanner(strings.NewReader(ok("fn", "logs", "logger", "--since", "10m")))
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			return len(lines) >= 4
		})
		if len(lines) != 4 || !strings.HasSuffix(lines[0], "first line") || !strings.HasSuffix(lines[1], "second line") ||
			!strings.Contains(lines[0], shortID(inv.Activation)) || !strings.HasSuffix(lines[2], "first line") {
			t.Fatalf("fn logs printed:\n%s", strings.Join(lines, "\n"))
		}
		out := ok("activation", "get", inv.Activation)
		if !strings.Contains(out, "first line") || !strings.Contains(out, "second line") {
			t.Fatalf("activation get lacks the logs: %s", out)
		}
	})
}
