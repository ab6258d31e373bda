// Package profiling lets a benchmark or an operator take a CPU profile of a
// running binary without a listener: with WISP_CPU_PROFILE=<file> set, the
// binary profiles from start to exit and writes the profile there (read it
// with `go tool pprof <binary> <file>`). Nothing is served, so there is
// nothing to reach from outside; unset, it costs nothing.
package profiling

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// Env is the variable naming the profile file.
const Env = "WISP_CPU_PROFILE"

// Start starts CPU profiling when Env names a file, and returns the
// function that stops it and writes the file (call it on exit).
func Start() (stop func()) {
	path := os.Getenv(Env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Env, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Env, err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
