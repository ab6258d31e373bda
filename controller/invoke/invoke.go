package invoke

import (
	"context"
	"encoding/json"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/tracing"
)

// Dispatcher runs an invocation somewhere. The fleet implements it; the
// caller has already checked that the function exists and that its args
// are within the input limit.
//
// # Errors
//
// ErrNoWorker (nothing ran, and never returned once the function may
// have run), GuestError, Failed, Lost (the function may have run),
// Quarantined, TooLarge; anything else is an internal error whose cause
// the caller logs.
type Dispatcher interface {
	Invoke(ctx context.Context, req Request) (Result, error)
}

// Sources of an invocation, as activation records show them.
const (
	SourceAPI  = "api"  // REST (the default)
	SourceMQTT = "mqtt" // a cloud event
)

// Request is one invocation, as the dispatcher receives it. Its fields
// are copies the dispatcher may keep.
type Request struct {
	Module   string
	Function string
	// Digest names the function's code ("sha256:<hex>").
	Digest string
	// Metadata is what scheduling and dispatch need of the function.
	Metadata fnspec.Metadata
	// Sinks are the function's sinks: its outputs are delivered there.
	Sinks []fnspec.Sink
	// Source says what started the invocation; "" means SourceAPI.
	Source string
	// Args is the compact JSON object of the request's args, "{}" when absent.
	Args json.RawMessage
	// Scheduling is the request's scheduling choice; zero when absent.
	Scheduling Scheduling
	// Config is the function's configuration (env, secret names, egress
	// allowlist): the dispatcher builds the invocation's environment from
	// it. MERGE(i14-config): the same field as config's, if it adds one.
	Config fnspec.Config
	// Trace is the span of the caller that started the invocation (the
	// REST request); zero when untraced. The dispatcher makes its spans
	// children of it when it is sampled, and carries it to the agent.
	Trace tracing.SpanContext
}

// ForFunction is the request that invokes the stored function fn with
// args (compact JSON; nil means "{}"), started by src: the one way the
// REST API and the cloud events build one.
//
// # Errors
//
// Failed (a 500 on REST) when fn's stored settings are unreadable: such a
// function is never run (fnspec's "Bad stored data").
func ForFunction(fn store.Function, args json.RawMessage, src string) (Request, error) {
	if fn.Unreadable != nil {
		return Request{}, Failed("The function's stored settings are unreadable; update the function to fix them", fn.Unreadable)
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	return Request{
		Module: fn.Module, Function: fn.Name, Digest: fn.Digest,
		Metadata: fn.Spec.Metadata, Sinks: fn.Spec.Sinks, Source: src, Args: args,
		Config: fn.Spec.Config,
	}, nil
}

// SourceOrDefault is the request's source, SourceAPI when unset.
func (r Request) SourceOrDefault() string {
	if r.Source == "" {
		return SourceAPI
	}
	return r.Source
}

// Scheduling selects an APP script for one invocation.
type Scheduling struct {
	Language string `json:"language"` // "app"
	Script   string `json:"script"`
}

// ActivationHeader is the response header that names an invocation's
// activation (its record, GET /v1/activations/{id}) beside the FunLess
// envelope, which stays as FunLess has it. The controller's REST API and
// the agents' local API send it whenever an activation was recorded.
const ActivationHeader = "X-Wisp-Activation-Id"

// Result is a successful invocation.
type Result struct {
	// Output is the function's JSON output.
	Output json.RawMessage
	// Activation is the id of the invocation's activation record; "" when
	// the dispatcher records none.
	Activation string
}

// NoWorkers is the Dispatcher used until agents exist: every call fails
// with ErrNoWorker.
type NoWorkers struct{}

// Invoke always fails with ErrNoWorker.
func (NoWorkers) Invoke(context.Context, Request) (Result, error) {
	return Result{}, ErrNoWorker
}
