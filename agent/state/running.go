package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"
)

// The crash-marker file (<state file>.running) says which code the agent is
// compiling or running right now, so that after the process dies the next
// start knows what was running when it died: a guest that blows the host's
// memory up gets the agent OOM-killed, and nothing else would remember it.
//
// It must be cheap, since every invocation marks and clears a slot. The file
// is mapped MAP_SHARED, so a mark is a 128-byte copy into the page cache and
// a clear a one-byte store: no system call, no fsync, no transaction
// (BenchmarkMarkRunning: 0.23 µs a mark and clear, against 4.8 µs with two
// pwrites, on the same VM). The page cache outlives the process, so a mark
// survives kill -9, an OOM kill and a Go runtime crash; it does not survive
// a power cut or a kernel crash, which are out of scope (and are rarely a
// guest's doing). Where mapping is not available the marks are written
// with pwrite.
//
// The file holds maxMarks slots; more marks at once than that fail (the
// code then runs unmarked: the runtime runs far fewer guests at once).
// Open reads what is marked (the previous process died with those marks),
// then the file starts over zeroed. Slot layout, 128 bytes:
//
//	0        1 = marked, 0 = free; written last by a mark, alone by a clear
//	1        digest length (at most 96)
//	2..97    digest
//	98       activity length (at most 14)
//	99..112  activity ("compiling", "running", ...)
//	113..120 mark time, unix milliseconds, uint64 big endian
//	121..124 CRC-32C of bytes 0..120 as marked
//	125..127 zero
//
// A slot whose checksum does not match is ignored: a mark cut short by the
// process's death (its code had not started) or damage.

const runningSuffix = ".running"

const (
	slotSize       = 128
	slotMaxDigest  = 96
	slotMaxWhat    = 14
	slotWhatOffset = 98
	slotTimeOffset = 113
	slotCRCOffset  = 121
	// maxMarks bounds the marks held at once (64 KiB of file).
	maxMarks = 512
)

// Crash is code that was compiling or running when the agent died, as Open
// found it in the crash-marker file.
type Crash struct {
	Digest string
	// Activity is what the agent was doing with the code: "compiling",
	// "running"...
	Activity string
	// Since is when it started doing it.
	Since time.Time
	// Alongside is how many other marks the file held: code running at the
	// same time, any of which may be the one that killed the process.
	Alongside int
}

// marks is the crash-marker file. Safe for concurrent use.
type marks struct {
	f    *os.File
	mem  []byte // the file, mapped; nil: write with pwrite instead
	mu   sync.Mutex
	free []int // free slot offsets
	err  error // the last write failure, for logs
}

// openMarks opens the crash-marker file at path and returns what it holds
// (the previous process died with those marks). Call reset once they are
// recorded elsewhere.
func openMarks(path string) (*marks, []Crash, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open crash markers %s: %w", path, err)
	}
	crashes, err := readMarks(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read crash markers %s: %w", path, err)
	}
	m := &marks{f: f, free: make([]int, 0, maxMarks)}
	for i := maxMarks - 1; i >= 0; i-- {
		m.free = append(m.free, i*slotSize)
	}
	return m, crashes, nil
}

// readMarks parses every marked slot of f.
func readMarks(f *os.File) ([]Crash, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil {
		return nil, err
	}
	var out []Crash
	for off := 0; off+slotSize <= len(b); off += slotSize {
		if c, ok := parseSlot(b[off : off+slotSize]); ok {
			out = append(out, c)
		}
	}
	for i := range out {
		out[i].Alongside = len(out) - 1
	}
	return out, nil
}

func parseSlot(s []byte) (Crash, bool) {
	if s[0] != 1 {
		return Crash{}, false
	}
	if crc32.Checksum(s[:slotCRCOffset], crcTable) != binary.BigEndian.Uint32(s[slotCRCOffset:]) {
		return Crash{}, false
	}
	n, w := int(s[1]), int(s[slotWhatOffset])
	if n == 0 || n > slotMaxDigest || w > slotMaxWhat {
		return Crash{}, false
	}
	return Crash{
		Digest:   string(s[2 : 2+n]),
		Activity: string(s[slotWhatOffset+1 : slotWhatOffset+1+w]),
		Since:    time.UnixMilli(int64(binary.BigEndian.Uint64(s[slotTimeOffset:]))).UTC(),
	}, true
}

// reset empties the file once the crashes it held are recorded elsewhere,
// gives it room for maxMarks zeroed slots and maps it.
func (m *marks) reset() error {
	if err := m.f.Truncate(0); err != nil {
		return err
	}
	if err := m.f.Truncate(maxMarks * slotSize); err != nil {
		return err
	}
	mem, err := mapShared(m.f, maxMarks*slotSize)
	if err != nil {
		return err
	}
	m.mem = mem
	return nil
}

var (
	// errDigestTooLong: a digest that does not fit a slot (never a real one).
	errDigestTooLong = errors.New("digest too long for a crash marker")
	// errMarksFull: more marks held at once than the file has slots.
	errMarksFull = errors.New("every crash-marker slot is in use")
)

// mark writes a slot saying that activity on digest starts now and returns
// the function that clears it. The slot is in the page cache when mark
// returns.
func (m *marks) mark(digest, activity string) (clear func(), err error) {
	if len(digest) == 0 || len(digest) > slotMaxDigest {
		return func() {}, errDigestTooLong
	}
	if len(activity) > slotMaxWhat {
		activity = activity[:slotMaxWhat]
	}
	var s [slotSize]byte
	s[0] = 1
	s[1] = byte(len(digest))
	copy(s[2:], digest)
	s[slotWhatOffset] = byte(len(activity))
	copy(s[slotWhatOffset+1:], activity)
	binary.BigEndian.PutUint64(s[slotTimeOffset:], uint64(time.Now().UnixMilli()))
	binary.BigEndian.PutUint32(s[slotCRCOffset:], crc32.Checksum(s[:slotCRCOffset], crcTable))

	m.mu.Lock()
	n := len(m.free)
	if n == 0 {
		m.mu.Unlock()
		return func() {}, errMarksFull
	}
	off := m.free[n-1]
	m.free = m.free[:n-1]
	m.mu.Unlock()
	if err := m.write(off, s[:]); err != nil {
		m.release(off)
		return func() {}, fmt.Errorf("write crash marker: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if err := m.write(off, []byte{0}); err != nil {
				// The slot stays marked: never reuse it, or a later mark
				// could be cleared by mistake. A crash would then report
				// this digest too, which errs on the safe side.
				m.mu.Lock()
				m.err = err
				m.mu.Unlock()
				return
			}
			m.release(off)
		})
	}, nil
}

// write puts b at off: bytes 1.. first, then byte 0, so that a process
// killed in the middle of a mapped copy leaves the slot free.
func (m *marks) write(off int, b []byte) error {
	if m.mem == nil {
		_, err := m.f.WriteAt(b, int64(off))
		return err
	}
	copy(m.mem[off+1:off+len(b)], b[1:])
	m.mem[off] = b[0]
	return nil
}

func (m *marks) release(off int) {
	m.mu.Lock()
	m.free = append(m.free, off)
	m.mu.Unlock()
}

// close clears every mark (the process is stopping in order: whatever still
// runs is not why it stops) and closes the file.
func (m *marks) close() error {
	var errs []error
	if m.mem != nil {
		clear(m.mem)
		errs = append(errs, unmap(m.mem))
		m.mem = nil
	}
	return errors.Join(append(errs, m.f.Truncate(0), m.f.Close())...)
}
