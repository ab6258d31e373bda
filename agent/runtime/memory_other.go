//go:build !linux

package runtime

import "os"

// Elsewhere a region is a Go slice, and a reset clears every byte any guest
// was given (memoryPool.put passes how many).

var hostPageSize = os.Getpagesize()

func newRegion(size int, pooled bool) *region {
	return &region{b: make([]byte, size), pooled: pooled}
}

func freeRegion(r *region) { r.b = nil }

func (p *memoryPool) resetRegion(r *region, used int) { clear(r.b[:used]) }

type pageMap struct{}

func (pageMap) close() {}
