package state

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the size, when it changed) but not its
// other metadata, like bbolt does on Linux.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
