package runtime

import (
	goruntime "runtime"
	"syscall"
	"time"
)

// threadCPU runs f on one locked OS thread and returns the CPU time that
// thread spent: unlike the wall clock it does not count the time other
// processes of a loaded machine took the cores, so a bound on it holds
// under any load. f must do its work on the calling goroutine.
func threadCPU(f func()) time.Duration {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &before); err != nil {
		panic(err)
	}
	f()
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &after); err != nil {
		panic(err)
	}
	used := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return used(after) - used(before)
}
