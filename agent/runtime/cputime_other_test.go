//go:build !linux

package runtime

import "time"

// threadCPU returns the wall time f took (the thread's CPU time is read
// on Linux only; see cputime_linux_test.go).
func threadCPU(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
