package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/invoke"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeDrainsBeforeClosing: when Serve's context ends with an
// invocation running on an agent, a new invocation is refused with
// ErrNoWorker (nothing ran), the running one gets its own answer, not a
// lost agent, and only then is the agent's session closed, with the code
// that tells it the controller is shutting down.
func TestServeDrainsBeforeClosing(t *testing.T) {
	c := startController(t)
	logs := &syncBuffer{}
	a := startAgentRuntime(t, c.addr, c.token, "edge", t.TempDir(), runtime.Config{Limits: runtime.Limits{Timeout: 1500 * time.Millisecond}},
		link.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitFor(t, "the agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(t, c.store, "spin", "loop", "")
	req := invoke.Request{Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Args: json.RawMessage(`{}`)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	running := make(chan error, 1)
	go func() {
		_, err := c.disp.Invoke(ctx, req)
		running <- err
	}()
	waitFor(t, "the call to run on the agent", func() bool { return a.rt.Stats().Busy == 1 })

	stopped := make(chan error, 1)
	go func() { stopped <- c.stop() }()
	waitFor(t, "the fleet to drain", c.fleet.shutting.Load)
	if _, err := c.disp.Invoke(ctx, req); !errors.Is(err, invoke.ErrNoWorker) {
		t.Fatalf("an invocation during the drain: %v, want ErrNoWorker", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with an invocation running", err)
	default:
	}
	if strings.Contains(logs.String(), "controller shutting down") {
		t.Fatal("the session was closed with an invocation running")
	}
	select {
	case err := <-running:
		if err == nil || errors.Is(err, invoke.ErrLost) || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("the invocation running at shutdown ended with %v, want the function's own timeout", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the invocation running at shutdown got no answer")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	waitFor(t, "the agent to hear the controller is shutting down", func() bool {
		return strings.Contains(logs.String(), "controller shutting down; reconnecting later")
	})
}
