package runtime

import (
	"encoding/binary"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// On Linux a pooled region is an anonymous private mapping of its own with
// transparent huge pages off, so the kernel hands it out (and tracks it) 4
// KiB page by page: a page no guest touched is not mapped at all, and
// reads as zero. Resetting a region then clears only the pages its page
// table holds (/proc/self/pagemap: present or swapped out), which are the
// pages some guest touched since the region was made; the rest is zero
// already. The cost of a reset follows what the guests used, not the size
// of their memory: a Rust function's 1 MiB stack costs the few pages it
// reached. Pages stay mapped once touched (clearing is much cheaper than
// faulting them in again: measured 1.3 µs per page fault against 0.04 µs
// to clear a page on the development VM), so a pooled region holds at most
// the pages its guests ever touched.

// directClearBytes: up to this much, clearing the used bytes costs less
// than reading the page map (about 1 to 2 µs).
const directClearBytes = 256 << 10

const madvNoHugePage = 15 // MADV_NOHUGEPAGE, the same on every Linux architecture

var hostPageSize = os.Getpagesize()

func newRegion(size int, pooled bool) *region {
	if size <= directClearBytes {
		// Cleared whole anyway: a Go slice costs less to make and free.
		return &region{b: make([]byte, size), pooled: pooled}
	}
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return &region{b: make([]byte, size), pooled: pooled}
	}
	// Without this a region under transparent huge pages is faulted in 2
	// MiB at a time, and all of it would need clearing.
	_ = syscall.Madvise(b, madvNoHugePage)
	return &region{b: b, pooled: pooled, mapped: true}
}

func freeRegion(r *region) {
	if r.mapped {
		_ = syscall.Munmap(r.b)
	}
	r.b = nil
}

// resetRegion zeroes the first used bytes of r, and marks r dense when
// most of its pages were touched.
func (p *memoryPool) resetRegion(r *region, used int) {
	if used == 0 {
		return
	}
	if !r.mapped || r.dense || used <= directClearBytes {
		clear(r.b[:used])
		return
	}
	touched, ok := p.pages.clearTouched(r.b[:used])
	if !ok {
		clear(r.b[:used])
		return
	}
	// Reading the page map costs about what clearing costs per page: for a
	// region mostly touched (its touched pages stay mapped) it is waste.
	r.dense = 2*touched*hostPageSize >= used
}

// pageMap reads /proc/self/pagemap: 8 bytes per virtual page, bit 63 set
// when the page is present, bit 62 when it is swapped out.
type pageMap struct {
	once sync.Once
	mu   sync.RWMutex // held to read, locked to close
	fd   int          // -1 when it cannot be read
}

const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmBatch   = 512 // entries read at once
)

func (m *pageMap) open() int {
	m.once.Do(func() {
		m.fd = -1
		fd, err := syscall.Open("/proc/self/pagemap", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		m.fd = fd
		if !m.selfTest() {
			syscall.Close(fd)
			m.fd = -1
		}
	})
	return m.fd
}

// selfTest checks that the page map says what this process did: of two
// fresh pages, the one written is present and the other is not. An
// emulator (qemu-user) or a kernel that reports otherwise would make
// clearTouched skip touched pages, so its page map is not used.
func (m *pageMap) selfTest() bool {
	ps := hostPageSize
	b, err := syscall.Mmap(-1, 0, 2*ps, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return false
	}
	defer syscall.Munmap(b)
	b[0] = 1
	var e [16]byte
	first := uintptr(unsafe.Pointer(unsafe.SliceData(b))) / uintptr(ps)
	if n, err := syscall.Pread(m.fd, e[:], int64(first)*8); err != nil || n != len(e) {
		return false
	}
	return binary.LittleEndian.Uint64(e[0:])&pmPresent != 0 && binary.LittleEndian.Uint64(e[8:])&(pmPresent|pmSwapped) == 0
}

func (m *pageMap) close() {
	fd := m.open()
	m.mu.Lock()
	defer m.mu.Unlock()
	if fd >= 0 {
		syscall.Close(fd)
		m.fd = -1
	}
}

// clearTouched zeroes every page of b (page-aligned at its start) that is
// present or swapped out, and returns how many; it reports false when the
// page map cannot be read (the caller then clears b).
func (m *pageMap) clearTouched(b []byte) (int, bool) {
	if m.open() < 0 {
		return 0, false
	}
	touched := 0
	ps := hostPageSize
	first := uintptr(unsafe.Pointer(unsafe.SliceData(b))) / uintptr(ps)
	n := (len(b) + ps - 1) / ps
	var buf [pmBatch * 8]byte
	runStart := -1
	flush := func(end int) {
		if runStart >= 0 {
			clear(b[runStart*ps : min(end*ps, len(b))])
			runStart = -1
		}
	}
	for i := 0; i < n; i += pmBatch {
		k := min(pmBatch, n-i)
		if !m.read(buf[:k*8], int64(first+uintptr(i))*8) {
			return 0, false
		}
		for j := range k {
			e := binary.LittleEndian.Uint64(buf[j*8:])
			if e&(pmPresent|pmSwapped) != 0 {
				touched++
				if runStart < 0 {
					runStart = i + j
				}
			} else {
				flush(i + j)
			}
		}
	}
	flush(n)
	return touched, true
}

func (m *pageMap) read(p []byte, off int64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.fd < 0 {
		return false
	}
	for len(p) > 0 {
		n, err := syscall.Pread(m.fd, p, off)
		if err != nil || n <= 0 {
			return false
		}
		p, off = p[n:], off+int64(n)
	}
	return true
}
