package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/tracing"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

// ScriptSource finds APP scripts by name.
type ScriptSource interface {
	GetScript(ctx context.Context, name string) (store.Script, error)
}

// Dispatcher implements invoke.Dispatcher on a Fleet: it refuses quarantined and
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
	tracer   *tracing.Exporter
}

// TraceWith makes the dispatcher export spans (scheduling, dispatch, and
// the agent's reported phases) for the invocations whose Request.Trace is
// sampled; nil, the default, exports none.
func (d *Dispatcher) TraceWith(e *tracing.Exporter) { d.tracer = e }

// ActivationRecorder records the activations the dispatcher ran.
type ActivationRecorder interface {
	Dispatched(ctx context.Context, a store.Activation, sinks []fnspec.Sink, wait bool) error
}

// RecordWith makes the dispatcher record every activation it ran. A
// function with sinks is recorded before the caller gets its answer (its
// sink deliveries must not be lost); others are recorded in the
// background, in batches.
func (d *Dispatcher) RecordWith(r ActivationRecorder) { d.recorder = r }

func (d *Dispatcher) record(ctx context.Context, req invoke.Request, inv *protocol.Invoke, s *Session, res *protocol.Result, started time.Time) error {
	if d.recorder == nil {
		return nil
	}
	a := store.Activation{
		ID: inv.ActivationID, Module: req.Module, Function: req.Function, Digest: req.Digest, Agent: s.ID,
		Source: req.SourceOrDefault(), Code: int(res.Code), Message: res.Message, Output: res.Output,
		Started: started.UTC(), Duration: time.Since(started), Logs: activations.WireLogs(res.Logs),
	}
	wait := len(req.Sinks) > 0 && res.Code == protocol.OK
	return d.recorder.Dispatched(context.WithoutCancel(ctx), a, req.Sinks, wait)
}

var _ invoke.Dispatcher = (*Dispatcher)(nil)

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

// Invoke implements invoke.Dispatcher.
func (d *Dispatcher) Invoke(ctx context.Context, req invoke.Request) (invoke.Result, error) {
	start := time.Now()
	m := d.fleet.cfg.Metrics
	if err := d.fleet.refused(req.Digest); err != nil {
		m.invoked(req.Module, req.Function, "quarantined", time.Since(start), 0, 0, 0, 0, 0)
		return invoke.Result{}, err
	}
	if d.fleet.shutting.Load() {
		// Draining (shutdown.go): nothing new starts here.
		return invoke.Result{}, fmt.Errorf("%w: this controller is shutting down", invoke.ErrNoWorker)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	meta := req.Metadata
	var script *scheduler.Script
	if req.Scheduling.Script != "" {
		if req.Scheduling.Language != "" && req.Scheduling.Language != "app" {
			return invoke.Result{}, invoke.Failed(fmt.Sprintf("unknown scheduling language %q", req.Scheduling.Language), nil)
		}
		s, err := d.script(ctx, req.Scheduling.Script)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return invoke.Result{}, fmt.Errorf("APP script %q: %w", req.Scheduling.Script, err)
			}
			return invoke.Result{}, invoke.Failed("cannot read the APP script", err)
		}
		script = s
	}
	// The guest's environment: its config's env, then its secrets' values
	// (an invoke error naming a missing secret, never a value).
	env, err := d.fleet.invokeEnv(ctx, req.Module, req.Config)
	if err != nil {
		return invoke.Result{}, err
	}
	inv := &protocol.Invoke{
		ActivationID:   activationid.New(start),
		Module:         req.Module,
		Function:       req.Function,
		Digest:         req.Digest,
		Args:           req.Args,
		DeadlineUnixMS: uint64(deadline.UnixMilli()),
		AllowedHosts:   d.fleet.allowHosts(req.Config),
		Env:            env,
	}
	fn := scheduler.Function{Digest: req.Digest, Tag: meta.Tag, CapacityKiB: meta.CapacityKiB()}
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
	// traced: this invocation's spans are exported; an unsampled trace
	// context is still carried to the agent.
	traced := d.tracer.Enabled() && req.Trace.Valid() && req.Trace.Sampled()
	if !traced && req.Trace.Valid() {
		inv.TraceParent = req.Trace.String()
	}
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		s, considered, err := d.pick(fn, script, tried, buf)
		m.scheduled(time.Since(t0))
		if traced {
			d.traceSchedule(req, inv, attempt, t0, considered, s, err)
		}
		if err != nil {
			if mayHaveRun != nil {
				m.invoked(req.Module, req.Function, "lost", time.Since(start), 0, 0, 0, 0, 0)
				return invoke.Result{}, invoke.Lost(fmt.Sprintf("agent %s did not start the invocation in time and no other agent could take it; it may have run there", mayHaveRun.Name()), err)
			}
			m.invoked(req.Module, req.Function, "no_worker", time.Since(start), 0, 0, 0, 0, 0)
			if refusal != nil {
				return invoke.Result{}, fmt.Errorf("%w: %v (and no other agent could take it: %v)", invoke.ErrNoWorker, refusal, err)
			}
			return invoke.Result{}, fmt.Errorf("%w: %v", invoke.ErrNoWorker, err)
		}
		var dispatch tracing.SpanContext
		var t1 time.Time
		if traced {
			dispatch, t1 = req.Trace.Child(), time.Now()
			inv.TraceParent = dispatch.String()
		}
		res, err := s.Invoke(ctx, inv, meta.Idempotent)
		if traced {
			d.traceDispatch(req, inv, attempt, s, dispatch, t1, res, err)
		}
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
				m.invoked(req.Module, req.Function, "lost", time.Since(start), 0, 0, 0, 0, 0)
				return invoke.Result{}, invoke.Lost(fmt.Sprintf("no agent started the invocation in time (%d tried); it may have run on %s", len(tried), mayHaveRun.Name()), err)
			}
			m.invoked(req.Module, req.Function, "no_worker", time.Since(start), 0, 0, 0, 0, 0)
			return invoke.Result{}, fmt.Errorf("%w: no agent could start the invocation (%d tried): %v", invoke.ErrNoWorker, len(tried), refusal)
		}
		if errors.Is(err, ErrAgentLost) {
			m.invoked(req.Module, req.Function, "lost", time.Since(start), 0, 0, 0, 0, 0)
			return invoke.Result{}, d.lost(s, inv, err)
		}
		if err != nil {
			m.invoked(req.Module, req.Function, "error", time.Since(start), 0, 0, 0, 0, 0)
			return invoke.Result{}, invocationFailure(s, err, ctx)
		}
		m.invoked(req.Module, req.Function, resultLabel(res.Code), time.Since(start), res.QueueUS, res.TransferUS, res.CompileUS, res.InstantiateUS, res.RunUS)
		if res.Code == protocol.Quarantined {
			return resultOf(s, res) // refused: nothing ran, nothing to record
		}
		if err := d.record(ctx, req, inv, s, res, start); err != nil {
			return invoke.Result{}, invoke.Failed("the function ran but its activation could not be recorded", err)
		}
		return recordedAs(inv.ActivationID)(resultOf(s, res))
	}
}

// pick makes one scheduling decision: the default policy from the fleet's
// index, reading a few agents (pickDefault), or an APP script over every
// schedulable agent. It returns the session chosen and how many agents
// the decision considered.
func (d *Dispatcher) pick(fn scheduler.Function, script *scheduler.Script, tried []*Session, buf *candidateBuf) (*Session, int, error) {
	if script == nil {
		return d.fleet.pickDefault(fn, tried)
	}
	d.fleet.candidates(fn.Digest, tried, buf)
	i, err := scheduler.Pick(buf.cs, fn, script, rand.IntN)
	if err != nil {
		return nil, len(buf.cs), err
	}
	return buf.ss[i], len(buf.cs), nil
}

// recordedAs returns a function that names activation id on a result or
// on its *invoke.Error: the caller's answer carries it (the
// X-Wisp-Activation-Id header).
func recordedAs(id string) func(invoke.Result, error) (invoke.Result, error) {
	return func(r invoke.Result, err error) (invoke.Result, error) {
		if err == nil {
			r.Activation = id
			return r, nil
		}
		var ie *invoke.Error
		if errors.As(err, &ie) {
			ie.Activation = id
		}
		return r, err
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
		return invoke.Quarantined(quarantineDetail(q, d.fleet.agentName(q.Agent)))
	}
	return invoke.Lost(fmt.Sprintf("agent %s was lost during the invocation; the function may have run, and it is not run again", s.Name()), err)
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
		return invoke.Failed("the invocation timed out", err)
	case errors.Is(err, context.Canceled):
		return invoke.Failed("the invocation was canceled", err)
	}
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return invoke.Failed(fmt.Sprintf("agent %s: %s", s.Name(), perr.Message), err)
	}
	return invoke.Failed("the invocation failed", err)
}

// resultOf maps an agent's Result to the API's answer: the function's own
// error (422), input over the agent's limit (413), code the agent holds in
// quarantine (423), any other failure (500, with the runtime's message), or
// the output.
func resultOf(s *Session, r *protocol.Result) (invoke.Result, error) {
	switch r.Code {
	case protocol.OK:
		return invoke.Result{Output: r.Output}, nil
	case protocol.GuestError:
		return invoke.Result{}, invoke.GuestError(r.Message)
	case protocol.InputTooLarge:
		return invoke.Result{}, invoke.TooLarge(fmt.Sprintf("agent %s: %s", s.Name(), r.Message))
	case protocol.Quarantined:
		return invoke.Result{}, invoke.Quarantined(fmt.Sprintf("agent %s refuses the function's code: %s", s.Name(), r.Message))
	case protocol.Overloaded: // every agent tried refused it before running it
		return invoke.Result{}, fmt.Errorf("%w: the agents are at their limit for this function: %s", invoke.ErrNoWorker, r.Message)
	}
	detail := r.Code.String()
	if r.Message != "" {
		detail += ": " + r.Message
	}
	return invoke.Result{}, invoke.Failed(detail, nil)
}
