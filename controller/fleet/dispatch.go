package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/api"
	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

// ScriptSource finds APP scripts by name.
type ScriptSource interface {
	GetScript(ctx context.Context, name string) (store.Script, error)
}

// Dispatcher implements api.Invoker on a Fleet: it refuses quarantined and
// held code, picks an agent with the scheduler and runs the invocation
// there, running it on another agent only when it provably never reached
// the first one's runtime (or, for an idempotent function, when that agent
// did not start it in time). Synchronous invocations run at most once
// otherwise: docs/delivery.md.
type Dispatcher struct {
	fleet   *Fleet
	scripts ScriptSource
	// Timeout bounds an invocation whose request carries no deadline.
	timeout time.Duration

	mu     sync.RWMutex
	parsed map[string]*scheduler.Script // APP scripts are immutable once created

	recorder ActivationRecorder
}

// ActivationRecorder records the activations the dispatcher ran.
type ActivationRecorder interface {
	Dispatched(ctx context.Context, a store.Activation, sinks [][]byte, wait bool) error
}

// RecordWith makes the dispatcher record every activation it ran. A
// function with sinks is recorded before the caller gets its answer (its
// sink deliveries must not be lost); others are recorded in the
// background, in batches.
func (d *Dispatcher) RecordWith(r ActivationRecorder) { d.recorder = r }

func (d *Dispatcher) record(ctx context.Context, req api.InvokeRequest, inv *protocol.Invoke, s *Session, res *protocol.Result, started time.Time) error {
	if d.recorder == nil {
		return nil
	}
	sinks := activations.SplitSinks(req.Sinks)
	a := store.Activation{
		ID: inv.ActivationID, Module: req.Module, Function: req.Function, Digest: req.Digest, Agent: s.ID,
		Source: source(req), Code: int(res.Code), Message: res.Message, Output: res.Output,
		Started: started.UTC(), Duration: time.Since(started),
	}
	wait := len(sinks) > 0 && res.Code == protocol.OK
	return d.recorder.Dispatched(context.WithoutCancel(ctx), a, sinks, wait)
}

var _ api.Invoker = (*Dispatcher)(nil)

// maxAttempts bounds the agents one invocation is tried on.
const maxAttempts = 3

// NewDispatcher returns a Dispatcher. timeout <= 0 means 30s.
func NewDispatcher(f *Fleet, scripts ScriptSource, timeout time.Duration) *Dispatcher {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Dispatcher{fleet: f, scripts: scripts, timeout: timeout, parsed: map[string]*scheduler.Script{}}
}

func (d *Dispatcher) script(ctx context.Context, name string) (*scheduler.Script, error) {
	d.mu.RLock()
	s, ok := d.parsed[name]
	d.mu.RUnlock()
	if ok {
		return s, nil
	}
	src, err := d.scripts.GetScript(ctx, name)
	if err != nil {
		return nil, err
	}
	parsed, err := scheduler.ParseAPP(src.Source)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.parsed[name] = &parsed
	d.mu.Unlock()
	return &parsed, nil
}

// Invoke implements api.Invoker.
func (d *Dispatcher) Invoke(ctx context.Context, req api.InvokeRequest) (api.InvokeResult, error) {
	start := time.Now()
	m := d.fleet.cfg.Metrics
	if err := d.fleet.refused(req.Digest); err != nil {
		m.invoked("quarantined", time.Since(start), 0, 0, 0, 0, 0)
		return api.InvokeResult{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	var meta api.Metadata
	if len(req.Metadata) > 0 {
		if err := json.Unmarshal(req.Metadata, &meta); err != nil {
			return api.InvokeResult{}, api.InvocationError("the function's metadata is unreadable", err)
		}
	}
	var script *scheduler.Script
	if req.Scheduling.Script != "" {
		if req.Scheduling.Language != "" && req.Scheduling.Language != "app" {
			return api.InvokeResult{}, api.InvocationError(fmt.Sprintf("unknown scheduling language %q", req.Scheduling.Language), nil)
		}
		s, err := d.script(ctx, req.Scheduling.Script)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return api.InvokeResult{}, fmt.Errorf("APP script %q: %w", req.Scheduling.Script, err)
			}
			return api.InvokeResult{}, api.InvocationError("cannot read the APP script", err)
		}
		script = s
	}
	inv := &protocol.Invoke{
		ActivationID:   activationid.New(start),
		Module:         req.Module,
		Function:       req.Function,
		Digest:         req.Digest,
		Args:           req.Args,
		DeadlineUnixMS: uint64(deadline.UnixMilli()),
	}
	fn := scheduler.Function{Digest: req.Digest, Tag: meta.Tag}
	if meta.Capacity != nil && *meta.Capacity > 0 {
		fn.CapacityKiB = uint64(*meta.Capacity)
	}
	var tried []*Session
	buf := candidateBufs.Get().(*candidateBuf)
	defer func() {
		clear(buf.ss) // drop session references before pooling
		candidateBufs.Put(buf)
	}()
	// mayHaveRun: an earlier attempt was cancelled after it may have
	// started (ErrSlowStart); the answer must never say "no worker" then.
	var mayHaveRun *Session
	var refusal error
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		d.fleet.candidates(req.Digest, tried, buf)
		idx, err := scheduler.Pick(buf.cs, fn, script, rand.IntN)
		m.scheduled(time.Since(t0))
		if err != nil {
			if mayHaveRun != nil {
				m.invoked("lost", time.Since(start), 0, 0, 0, 0, 0)
				return api.InvokeResult{}, api.InvocationLost(fmt.Sprintf("agent %s did not start the invocation in time and no other agent could take it; it may have run there", mayHaveRun.Name()), err)
			}
			m.invoked("no_worker", time.Since(start), 0, 0, 0, 0, 0)
			if refusal != nil {
				return api.InvokeResult{}, fmt.Errorf("%w: %v (and no other agent could take it: %v)", api.ErrNoWorker, refusal, err)
			}
			return api.InvokeResult{}, fmt.Errorf("%w: %v", api.ErrNoWorker, err)
		}
		s := buf.ss[idx]
		res, err := s.Invoke(ctx, inv, meta.Idempotent)
		again := false
		switch {
		case err == nil && protocol.NotStarted(res.Code):
			// The agent refused it before running any of it.
			again, refusal = true, fmt.Errorf("agent %s: %v", s.Name(), res.Err())
		case errors.Is(err, ErrNotStarted), errors.Is(err, ErrDisconnected):
			again, refusal = true, err
		case errors.Is(err, ErrSlowStart):
			again, mayHaveRun = true, s
		}
		if again {
			tried = append(tried, s)
			if attempt+1 < maxAttempts {
				m.retried()
				continue
			}
			if mayHaveRun != nil {
				m.invoked("lost", time.Since(start), 0, 0, 0, 0, 0)
				return api.InvokeResult{}, api.InvocationLost(fmt.Sprintf("no agent started the invocation in time (%d tried); it may have run on %s", len(tried), mayHaveRun.Name()), err)
			}
			m.invoked("no_worker", time.Since(start), 0, 0, 0, 0, 0)
			return api.InvokeResult{}, fmt.Errorf("%w: no agent could start the invocation (%d tried): %v", api.ErrNoWorker, len(tried), refusal)
		}
		if errors.Is(err, ErrAgentLost) {
			m.invoked("lost", time.Since(start), 0, 0, 0, 0, 0)
			return api.InvokeResult{}, d.lost(s, inv, err)
		}
		if err != nil {
			m.invoked("error", time.Since(start), 0, 0, 0, 0, 0)
			return api.InvokeResult{}, invocationFailure(s, err, ctx)
		}
		m.invoked(resultLabel(res.Code), time.Since(start), res.QueueUS, res.TransferUS, res.CompileUS, res.InstantiateUS, res.RunUS)
		if res.Code == protocol.Quarantined {
			return resultOf(s, res) // refused: nothing ran, nothing to record
		}
		if err := d.record(ctx, req, inv, s, res, start); err != nil {
			return api.InvokeResult{}, api.InvocationError("the function ran but its activation could not be recorded", err)
		}
		return resultOf(s, res)
	}
}

// lost answers an invocation whose agent went away after the Invoke
// reached it. The function may have run, so it is not run again; if the
// agent went silent (rather than closing or reconnecting), it may have
// died of this very code, which is held until it says so. An agent that
// already came back and reported the crash made the code quarantined: the
// answer says so.
func (d *Dispatcher) lost(s *Session, inv *protocol.Invoke, err error) error {
	if lostSilently(err) {
		d.fleet.holdDigest(inv.Digest, s, "connection lost during the invocation")
	}
	if q, ok := (*d.fleet.quarantine.known.Load())[inv.Digest]; ok {
		return api.Quarantined(quarantineDetail(q, d.fleet.agentName(q.Agent)))
	}
	return api.InvocationLost(fmt.Sprintf("agent %s was lost during the invocation; the function may have run, and it is not run again", s.Name()), err)
}

func resultLabel(c protocol.ErrorCode) string {
	if c == protocol.OK {
		return "ok"
	}
	return c.String()
}

func invocationFailure(s *Session, err error, ctx context.Context) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return api.InvocationError("the invocation timed out", err)
	case errors.Is(err, context.Canceled):
		return api.InvocationError("the invocation was canceled", err)
	}
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return api.InvocationError(fmt.Sprintf("agent %s: %s", s.Name(), perr.Message), err)
	}
	return api.InvocationError("the invocation failed", err)
}

// resultOf maps an agent's Result to the API's answer: the function's own
// error (422), input over the agent's limit (413), code the agent holds in
// quarantine (423), any other failure (500, with the runtime's message), or
// the output.
func resultOf(s *Session, r *protocol.Result) (api.InvokeResult, error) {
	switch r.Code {
	case protocol.OK:
		return api.InvokeResult{Output: r.Output}, nil
	case protocol.GuestError:
		return api.InvokeResult{}, api.GuestError(r.Message)
	case protocol.InputTooLarge:
		return api.InvokeResult{}, api.TooLarge(fmt.Sprintf("agent %s: %s", s.Name(), r.Message))
	case protocol.Quarantined:
		return api.InvokeResult{}, api.Quarantined(fmt.Sprintf("agent %s refuses the function's code: %s", s.Name(), r.Message))
	case protocol.Overloaded: // every agent tried refused it before running it
		return api.InvokeResult{}, fmt.Errorf("%w: the agents are at their limit for this function: %s", api.ErrNoWorker, r.Message)
	}
	detail := r.Code.String()
	if r.Message != "" {
		detail += ": " + r.Message
	}
	return api.InvokeResult{}, api.InvocationError(detail, nil)
}

func source(req api.InvokeRequest) string {
	if req.Source == "" {
		return "api"
	}
	return req.Source
}
