// Package executor runs invocations on an agent: it makes sure the code of a
// digest is in the agent's state and compiled in the runtime (fetching it
// from the controller through a callback when it is missing; code pushed
// ahead of its calls is compiled into the disk cache, and kept in memory
// only where there is room), runs the
// function, and accounts for what it did (in-flight count, phase timings,
// Prometheus metrics).
//
// It is transport-agnostic: the QUIC link, the local invoke API and local
// triggers all call Invoke, so the quarantine is enforced here, once for
// every path: a quarantined digest is neither compiled nor run, and the
// call fails with a *state.QuarantineError (wire code Quarantined).
// With KeepRecent, every call, whatever its path, also goes into the
// agent's ring of recent activations (agent/status) that `wisp-agent
// status` shows.
// CrashMarks is the runtime's Track hook that records, in the agent's
// crash-marker file, what is about to compile or run.
//
// It must never import controller packages.
package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/fault"
	"github.com/wispfn/wisp/protocol"
)

// Call is one invocation as the executor sees it.
type Call struct {
	ActivationID string
	Module       string
	Function     string
	Digest       string
	Args         json.RawMessage
	AllowedHosts []string
	// Env is the function's environment, "NAME=value" each (its config's
	// env and its secrets' values). Never logged nor recorded.
	Env []string
	// Limits override the runtime defaults (zero fields: default).
	Limits runtime.Limits
	// Source names the path the call came from, for the ring of recent
	// activations (status.SourceController when empty).
	Source string
}

// Outcome is what a call produced. Err is nil on success; otherwise it is a
// *runtime.Error (function failure) or an infrastructure error (code
// unavailable).
type Outcome struct {
	Output json.RawMessage
	// Logs are the lines the function wrote, bounded by the runtime (see
	// runtime.Result.Logs), also when it failed.
	Logs []protocol.LogLine
	Err  error

	Queue, Transfer, Compile, Instantiate, Run time.Duration
	// Compiled: this call compiled the module; DiskCacheHit: from disk.
	Compiled, DiskCacheHit bool
}

// Fetch returns the code of a digest from elsewhere (the controller).
type Fetch func(ctx context.Context, digest string) ([]byte, error)

// ErrNoCode: the digest is not on this agent and could not be fetched.
var ErrNoCode = errors.New("function code not available on this agent")

// Executor runs calls. Safe for concurrent use.
type Executor struct {
	rt      *runtime.Runtime
	st      *state.State
	log     *slog.Logger
	metrics *Metrics

	inflight atomic.Int64
	total    atomic.Uint64
	// recent, when set, keeps the last calls for `wisp-agent status`.
	recent *status.Recent
}

// New returns an Executor over a runtime and a state file. metrics may be nil.
func New(rt *runtime.Runtime, st *state.State, m *Metrics, log *slog.Logger) *Executor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{rt: rt, st: st, log: log, metrics: m}
}

// KeepRecent makes every later call, whatever its path, go into r (the
// agent's ring for `wisp-agent status`). Call it before the first Invoke.
func (e *Executor) KeepRecent(r *status.Recent) { e.recent = r }

// InFlight is the number of calls running now.
func (e *Executor) InFlight() int64 { return e.inflight.Load() }

// Total is the number of calls started since the executor was made.
func (e *Executor) Total() uint64 { return e.total.Load() }

// Runtime returns the runtime calls run on.
func (e *Executor) Runtime() *runtime.Runtime { return e.rt }

// Store keeps code pushed by the controller and prepares it
// (runtime.Prepare): with the agent's disk compilation cache it is
// compiled there now, and kept in memory too only if the module cache has
// room for it without evicting another; so the first call is warm or a
// disk load, and a push of many functions does not fill memory with
// functions that are not called. Quarantined code is kept (it may be
// released) but not compiled.
func (e *Executor) Store(ctx context.Context, digest string, code []byte) error {
	e.metrics.codeReceived("push")
	if err := e.st.PutCode(digest, code); err != nil {
		return err
	}
	if _, ok := e.st.Quarantined(digest); ok {
		e.log.Info("keeping quarantined code without compiling it", "digest", digest)
		return nil
	}
	info, err := e.rt.Prepare(ctx, code)
	if err == nil {
		e.metrics.observeLoad(info)
	}
	return err
}

// Drop forgets digests: from memory and from the state file.
func (e *Executor) Drop(digests ...string) error {
	for _, d := range digests {
		e.rt.Evict(d)
	}
	return e.st.DeleteCode(digests...)
}

// Digests lists the code this agent holds.
func (e *Executor) Digests() []string {
	ds, err := e.st.Digests()
	if err != nil {
		e.log.Warn("listing stored code", "err", err)
	}
	return ds
}

// Invoke runs one call. fetch may be nil (no controller): a digest that is
// neither compiled nor stored then fails with ErrNoCode.
func (e *Executor) Invoke(ctx context.Context, c Call, fetch Fetch) Outcome {
	e.inflight.Add(1)
	e.total.Add(1)
	e.metrics.inflight(1)
	defer func() {
		e.inflight.Add(-1)
		e.metrics.inflight(-1)
	}()
	var out Outcome
	if e.recent != nil {
		started := time.Now()
		defer func() { e.remember(c, &out, started) }()
	}
	if q, ok := e.st.Quarantined(c.Digest); ok {
		out.Err = &state.QuarantineError{Entry: q}
		e.metrics.observe(c, &out)
		return out
	}
	if err := e.ensureLoaded(ctx, c.Digest, fetch, &out); err != nil {
		out.Err = err
		e.metrics.observe(c, &out)
		return out
	}
	ctx = fault.WithInput(ctx, c.Args)
	req := runtime.Request{Input: c.Args, AllowedHosts: c.AllowedHosts, Env: c.Env, Limits: c.Limits, Share: shareOf(c)}
	res, err := e.rt.Invoke(ctx, c.Digest, req)
	if errors.Is(err, runtime.ErrNotLoaded) {
		// Evicted between ensureLoaded and Invoke: load again once.
		if err = e.ensureLoaded(ctx, c.Digest, fetch, &out); err == nil {
			res, err = e.rt.Invoke(ctx, c.Digest, req)
		}
	}
	out.Output, out.Logs, out.Err = res.Output, res.Logs, err
	out.Queue, out.Instantiate, out.Run = res.Queue, res.Instantiate, res.Run
	e.metrics.observe(c, &out)
	if err != nil {
		e.log.Debug("invocation failed", "activation", c.ActivationID, "module", c.Module, "function", c.Function, "err", err)
	}
	return out
}

// remember puts a finished call into the ring of recent activations.
func (e *Executor) remember(c Call, out *Outcome, started time.Time) {
	src := c.Source
	if src == "" {
		src = status.SourceController
	}
	code := protocol.OK
	if out.Err != nil {
		code = WireCode(out.Err)
	}
	e.recent.Add(status.Activation{ID: c.ActivationID, Module: c.Module, Function: c.Function, Source: src,
		Status: status.StatusOf(code), Started: started, Duration: time.Since(started), Logs: out.Logs})
}

// shareOf is whose share of the instance slots a call uses: its function,
// "module/function" (names cannot contain '/'), whichever path it came
// from. Functions have no owner yet; when subjects own modules, the owner
// goes in Owner and fairness between subjects applies with no other change.
func shareOf(c Call) runtime.ShareKey {
	return runtime.ShareKey{Function: c.Module + "/" + c.Function}
}

func (e *Executor) ensureLoaded(ctx context.Context, digest string, fetch Fetch, out *Outcome) error {
	if e.rt.Loaded(digest) {
		return nil
	}
	code, err := e.st.Code(digest)
	if errors.Is(err, state.ErrNotFound) {
		if fetch == nil {
			return fmt.Errorf("%w: %s", ErrNoCode, digest)
		}
		start := time.Now()
		code, err = fetch(ctx, digest)
		out.Transfer = time.Since(start)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrNoCode, digest, err)
		}
		e.metrics.codeReceived("fetch")
		if runtime.Digest(code) != digest {
			return fmt.Errorf("%w: %s: received bytes hash to %s", ErrNoCode, digest, runtime.Digest(code))
		}
		if err := e.st.PutCode(digest, code); err != nil {
			return fmt.Errorf("storing code %s: %w", digest, err)
		}
	} else if err != nil {
		return fmt.Errorf("reading code %s: %w", digest, err)
	}
	start := time.Now()
	info, err := e.rt.Load(ctx, code)
	out.Compile = time.Since(start)
	if err != nil {
		return err
	}
	out.Compiled, out.DiskCacheHit = info.Compiled, info.DiskCacheHit
	e.metrics.observeLoad(info)
	return nil
}

// CrashMarks returns the runtime's Config.Track hook for an agent: it
// writes what is about to compile or run into the state's crash-marker file
// (see state.MarkRunning), so that code that kills the process is
// quarantined when the agent starts again. A marker that cannot be written
// is logged, and the work goes on unmarked.
func CrashMarks(st *state.State, log *slog.Logger) func(ctx context.Context, digest string, w runtime.Work) func() {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, digest string, w runtime.Work) func() {
		clear, err := st.MarkRunning(digest, w.String())
		if err != nil {
			log.Warn("cannot write a crash marker; running unmarked", "digest", digest, "work", w.String(), "err", err)
		}
		if w == runtime.WorkRun {
			fault.AtRun(ctx)
		}
		return clear
	}
}
