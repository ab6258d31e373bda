package activation

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

// Sources of local activations, as their outbox entries (and the
// controller's activation records) name them.
const (
	SourceLocalAPI   = "local-api"
	SourceLocalMQTT  = "local-mqtt"
	SourceLocalTimer = "local-timer" // an edge-local timer (agent/timers)
)

// Recorder keeps a locally run activation: the agent's outbox
// (*state.State). key, when not nil, identifies the message that started
// it and is remembered in the same write (Seen finds it).
type Recorder interface {
	AppendOutboxKeyed(e *protocol.OutboxEntry, key []byte) error
	// AppendOutboxUnsynced returns before the fsync (Request.Unsynced).
	AppendOutboxUnsynced(e *protocol.OutboxEntry) error
	// Seen returns the activation id a message key was recorded with.
	Seen(key []byte) (string, bool)
}

var _ Recorder = (*state.State)(nil)

// Config configures a Runner.
type Config struct {
	Executor *executor.Executor
	// State holds the desired set.
	State *state.State
	// Recorder defaults to State.
	Recorder Recorder
	// OnRecord, when set, is called after each activation is recorded
	// (the agent wakes its outbox drain).
	OnRecord func()
	Logger   *slog.Logger
}

// Runner runs and records local activations. Safe for concurrent use.
type Runner struct {
	exec     *executor.Executor
	state    *state.State
	rec      Recorder
	onRecord func()
	log      *slog.Logger
}

// New returns a Runner; it does no I/O.
func New(cfg Config) (*Runner, error) {
	if cfg.Executor == nil || cfg.State == nil {
		return nil, errors.New("activation: executor and state are required")
	}
	r := &Runner{exec: cfg.Executor, state: cfg.State, rec: cfg.Recorder, onRecord: cfg.OnRecord, log: cfg.Logger}
	if r.rec == nil {
		r.rec = cfg.State
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Request is one local activation.
type Request struct {
	Module, Function string
	// Args is the function's input, a JSON object.
	Args []byte
	// Source names the caller (SourceLocalAPI, SourceLocalMQTT, SourceLocalTimer).
	Source string
	// ActivationID is the id to record; "" makes a new one.
	ActivationID string
	// Unsynced lets Run return once the outbox entry is written to the
	// operating system, before its fsync (within 25 ms): an agent crash
	// loses nothing, a power cut in that window can lose the record. Only
	// Run honours it; RunMessage always waits for the fsync, since the
	// broker redelivers what is not acknowledged.
	Unsynced bool
	// TraceParent is the caller's W3C traceparent ("" = none), kept in
	// the outbox entry so that the controller can export the activation's
	// span when the entry arrives.
	TraceParent string
}

// Result is a recorded activation.
type Result struct {
	ActivationID string
	// Output is the function's output when Err is nil.
	Output []byte
	// Err is the function's failure, recorded as such: a *runtime.Error
	// (guest error, trap, timeout, limits) or ErrQuarantined (the
	// code is quarantined: nothing ran, and the refusal is recorded so that
	// a trigger acknowledges its message instead of getting it forever).
	Err error
	// Duplicate: RunMessage found the message already recorded and did not
	// run it again (ActivationID is the recorded one; Output is empty).
	Duplicate bool
}

// Run runs req's function and records the activation (see the package
// doc's contract).
func (r *Runner) Run(ctx context.Context, req Request) (Result, error) {
	return r.run(ctx, req, nil)
}

// MessageKey identifies one message for one function: the same function,
// topic and payload give the same key.
func MessageKey(module, function, topic string, payload []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(module + "/" + function + "\x00" + topic + "\x00"))
	h.Write(payload)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// RunMessage is Run for a message that a broker may deliver again: key
// (MessageKey) is recorded with the activation, and when redelivered is
// true (the MQTT DUP flag) and key is already recorded, the function does
// not run again and Result.Duplicate is set. req.Unsynced is ignored.
func (r *Runner) RunMessage(ctx context.Context, req Request, key [32]byte, redelivered bool) (Result, error) {
	if redelivered {
		if id, ran := r.rec.Seen(key[:]); ran {
			return Result{ActivationID: id, Duplicate: true}, nil
		}
	}
	req.Unsynced = false
	return r.run(ctx, req, key[:])
}

func (r *Runner) run(ctx context.Context, req Request, key []byte) (Result, error) {
	fn, ok := r.state.DesiredFunction(req.Module, req.Function)
	if !ok {
		return Result{}, fmt.Errorf("%w: %s/%s", ErrUnknownFunction, req.Module, req.Function)
	}
	id := req.ActivationID
	if id == "" {
		id = activationid.New(time.Now())
	}
	started := time.Now()
	// The function's config as the controller last sent it (kept in the
	// desired set, so also after a restart in a partition), with its
	// secrets' values (state.DesiredEnv).
	out := r.exec.Invoke(ctx, executor.Call{ActivationID: id, Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Args: req.Args,
		AllowedHosts: fn.AllowHosts, Env: state.DesiredEnv(fn), Source: req.Source}, nil)
	if errors.Is(out.Err, ErrNoCode) || errors.Is(out.Err, ErrOverloaded) || errors.Is(out.Err, ErrClosed) {
		return Result{}, out.Err // nothing ran: there is no activation to record
	}
	entry := protocol.OutboxEntry{
		ActivationID: id, Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Source: req.Source,
		Output: out.Output, StartedUnixUS: uint64(started.UnixMicro()), DurationUS: uint64(time.Since(started).Microseconds()),
		Logs:        out.Logs, // bounded by the runtime (Limits.LogLines, LogBytes), failures included
		TraceParent: req.TraceParent,
	}
	res := Result{ActivationID: id, Output: out.Output, Err: out.Err}
	if out.Err != nil {
		entry.Code, entry.Message, entry.Output = executor.WireCode(out.Err), out.Err.Error(), nil
		res.Output = nil
	}
	var err error
	if req.Unsynced && key == nil {
		err = r.rec.AppendOutboxUnsynced(&entry)
	} else {
		err = r.rec.AppendOutboxKeyed(&entry, key)
	}
	if err != nil {
		r.log.Error("outbox append failed; the activation is not recorded", "activation", id, "module", fn.Module, "function", fn.Name, "err", err)
		return Result{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	if r.onRecord != nil {
		r.onRecord()
	}
	return res, nil
}
