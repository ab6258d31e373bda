package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/invoke"
)

// TestOverloadedAgentsAreBypassedThenRefused: an agent whose queue for a
// function is full refuses the call before running it (Overloaded), so the
// dispatcher runs it on another agent; when every agent refuses, the
// caller gets ErrNoWorker (503) at once, not a 500 that suggests the
// function ran, and no agent ran it.
func TestOverloadedAgentsAreBypassedThenRefused(t *testing.T) {
	c := startController(t)
	tight := runtime.Config{MaxPerFunction: 1, MaxQueuedPerFunction: 1}
	a1 := startAgentRuntime(t, c.addr, c.token, "edge1", t.TempDir(), tight, link.Config{})
	a2 := startAgentRuntime(t, c.addr, c.token, "edge2", t.TempDir(), tight, link.Config{})
	waitFor(t, "agents", func() bool { return c.fleet.Connected() == 2 })
	fn := createFunction(t, c.store, "spin", "loop", "")
	call := func(ctx context.Context) error {
		_, err := c.disp.Invoke(ctx, invoke.Request{Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Args: json.RawMessage(`{}`)})
		return err
	}

	// Four calls fill both agents (one running and one queued each),
	// wherever the scheduler first sends them.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); call(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	full := func(a *testAgent) bool { s := a.rt.Stats(); return s.Busy == 1 && s.Waiting == 1 }
	waitFor(t, "both agents running one call and queueing one", func() bool { return full(a1) && full(a2) })

	t0 := time.Now()
	err := call(context.Background())
	if !errors.Is(err, invoke.ErrNoWorker) {
		t.Fatalf("a call no agent has room for: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
	s1, s2 := a1.rt.Stats(), a2.rt.Stats()
	if s1.RefusedQueueFull+s2.RefusedQueueFull < 2 {
		t.Fatalf("refusals: edge1 %d, edge2 %d; the call must have been tried on both", s1.RefusedQueueFull, s2.RefusedQueueFull)
	}
	if s1.Invocations+s2.Invocations != 4+s1.RefusedQueueFull+s2.RefusedQueueFull {
		t.Fatalf("invocations edge1 %d edge2 %d", s1.Invocations, s2.Invocations)
	}
}
