// Package profiling lets a benchmark or an operator take a CPU profile or an
// execution trace of a running binary without a listener: with
// WISP_CPU_PROFILE=<file> set, the binary profiles from start to exit and
// writes the profile there (read it with `go tool pprof <binary> <file>`);
// with WISP_EXEC_TRACE=<file>, it records a runtime execution trace (every
// goroutine wake-up, system call and network poll; read it with `go tool
// trace <file>`). Nothing is served, so there is nothing to reach from
// outside; unset, they cost nothing.
package profiling

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// Env is the variable naming the profile file.
const Env = "WISP_CPU_PROFILE"

// TraceEnv is the variable naming the execution trace file.
const TraceEnv = "WISP_EXEC_TRACE"

// Start starts CPU profiling when Env names a file, and tracing when
// TraceEnv does, and returns the function that stops both and writes the
// files (call it on exit).
func Start() (stop func()) {
	stopProfile := start(Env, pprof.StartCPUProfile, pprof.StopCPUProfile)
	stopTrace := start(TraceEnv, trace.Start, trace.Stop)
	return func() {
		stopProfile()
		stopTrace()
	}
}

// start runs begin on the file the variable env names, if any.
func start(env string, begin func(io.Writer) error, end func()) (stop func()) {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
		return func() {}
	}
	if err := begin(f); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
		f.Close()
		return func() {}
	}
	return func() {
		end()
		f.Close()
	}
}
