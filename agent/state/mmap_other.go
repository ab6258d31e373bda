//go:build !unix

package state

import "os"

// mapShared does not map on this platform: the crash markers are written
// with pwrite instead.
func mapShared(*os.File, int) ([]byte, error) { return nil, nil }

func unmap([]byte) error { return nil }
