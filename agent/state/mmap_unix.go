//go:build unix

package state

import (
	"os"
	"syscall"
)

// mapShared maps the first size bytes of f read-write and shared, so that
// stores land in the page cache.
func mapShared(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmap(b []byte) error { return syscall.Munmap(b) }
