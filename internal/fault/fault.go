//go:build !(wispfault && unix)

// Package fault injects failures into the agent for the tests that need a
// process to die or stall at a chosen moment: internal/e2e builds a second
// wisp-agent with -tags wispfault for its poison-pill and slow-start tests.
//
// In every other build (this file) the functions do nothing and nothing
// reads the configuration, so no fault is reachable in a release binary;
// internal/e2e checks that the release agent binary does not even contain
// the variable's name.
//
// With -tags wispfault, the configuration is read once from WISP_FAULT, a
// comma-separated list of:
//
//	kill-on-input=<marker>    SIGKILL the process when a guest starts
//	                          running for an invocation whose input holds
//	                          marker (after the crash marker is written, as
//	                          a guest that exhausts the host's memory would)
//	delay-started=<duration>  hold back the first frame an agent sends on
//	                          every invocation stream (its Started, or its
//	                          Result) for duration
//
// It must never be imported by controller code.
package fault

import (
	"context"
	"time"
)

// WithInput returns ctx carrying what AtRun needs to know about an
// invocation's input.
func WithInput(ctx context.Context, input []byte) context.Context { return ctx }

// AtRun is called when a guest starts running for an invocation.
func AtRun(ctx context.Context) {}

// StartedDelay is how long an agent holds back its first frame on an
// invocation stream.
func StartedDelay() time.Duration { return 0 }
