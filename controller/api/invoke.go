package api

import (
	"context"
	"encoding/json"
)

// Invoker runs a function somewhere. The scheduler implements it; the API
// has already checked that the function exists and that its args are
// within the input limit.
//
// # Errors
//
// ErrNoWorker (503: nothing ran, and never returned once the function may
// have run), GuestError (422), InvocationError (500), InvocationLost (502:
// the function may have run), Quarantined (423), TooLarge (413); anything
// else is a 500 "Internal server error" with the cause logged.
type Invoker interface {
	Invoke(ctx context.Context, req InvokeRequest) (InvokeResult, error)
}

// InvokeRequest is one invocation, as the API hands it to the Invoker. Its
// fields are copies the Invoker may keep.
type InvokeRequest struct {
	Module   string
	Function string
	// Digest names the function's code ("sha256:<hex>").
	Digest string
	// Metadata is the function's normalised metadata JSON, nil when absent.
	Metadata []byte
	// Sinks is the function's sinks JSON, nil when absent: its outputs are
	// delivered there.
	Sinks []byte
	// Source says what started the invocation: "api" (REST, the default)
	// or "mqtt" (a cloud event).
	Source string
	// Args is the compact JSON object of the request's args, "{}" when absent.
	Args json.RawMessage
	// Scheduling is the request's scheduling choice; zero when absent.
	Scheduling Scheduling
}

// Scheduling selects an APP script for one invocation.
type Scheduling struct {
	Language string `json:"language"` // "app"
	Script   string `json:"script"`
}

// InvokeResult is a successful invocation.
type InvokeResult struct {
	// Output is the function's JSON output, sent as {"data": Output}.
	Output json.RawMessage
}

// NoWorkers is the Invoker used until agents exist: every call fails with
// ErrNoWorker.
type NoWorkers struct{}

// Invoke always fails with ErrNoWorker.
func (NoWorkers) Invoke(context.Context, InvokeRequest) (InvokeResult, error) {
	return InvokeResult{}, ErrNoWorker
}
