package activation

import (
	"errors"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
)

// Errors of Run and RunMessage. Each means the activation is not recorded;
// only after ErrNotRecorded may the function have run.
var (
	// ErrUnknownFunction: the function is not in the agent's desired set.
	ErrUnknownFunction = errors.New("activation: function not in this agent's desired set")
	// ErrNoCode: the function's code is not on this agent (yet).
	ErrNoCode = executor.ErrNoCode
	// ErrOverloaded: the function's queue on this agent is full; it did
	// not run.
	ErrOverloaded = runtime.ErrOverloaded
	// ErrClosed: the agent is stopping (its runtime is closed); the
	// function did not run.
	ErrClosed = runtime.ErrClosed
	// ErrNotRecorded: the outbox append failed; the function ran, and its
	// caller must not take the activation for recorded.
	ErrNotRecorded = errors.New("activation: the activation could not be recorded")
)

// ErrQuarantined marks a recorded refusal (Result.Err): the function's
// code is quarantined on this agent, so nothing ran.
var ErrQuarantined = state.ErrQuarantined
