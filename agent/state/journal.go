package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/protocol"
)

// The outbox write path has two stages, so that a local caller waits for
// one small fsync instead of a bbolt commit (two fsyncs: its data pages,
// then its meta page):
//
//  1. AppendOutbox frames the entry, with those of every concurrent caller,
//     into the outbox journal (a file next to the bbolt file) and
//     fdatasyncs it once. Then it returns: the entry is on disk.
//  2. In the background the journaled entries are written into the bbolt
//     outbox in one transaction per commitLinger (sooner when a reader of
//     the outbox needs them), so that bbolt's fsyncs seldom queue in front
//     of a journal fsync. Once bbolt holds everything the journal held, the
//     journal starts over at offset 0.
//
// Open replays whatever the journal still holds into bbolt before anything
// else runs, so an entry AppendOutbox returned for is never lost, even by
// kill -9 or a power cut between the stages. A replay can re-add an entry
// that was already committed and acknowledged (a crash just after the
// commit); the controller drops ids it already recorded.
//
// The journal is overwritten in place rather than appended to and
// truncated: an fdatasync that need not record a new file size is about a
// fifth cheaper here. It is preallocated with zeros (written, so that no
// write has to convert an unwritten extent). Each start over takes a new
// epoch; a frame of an older epoch, left behind the current ones, ends a
// replay. Frame, little endian:
//
//	uint32  payload length
//	uint32  CRC-32C of epoch and payload
//	uint64  epoch
//	payload uvarint key length, key (a trigger message's, or empty), OutboxEntry bytes
//
// A torn or corrupt frame ends the replay too: it can only be the tail of
// a write that never returned to its caller.

const journalSuffix = ".journal"

const (
	frameHeaderLen   = 16
	journalPrealloc  = 1 << 20
	maxQueuedEntries = 100_000 // journaled, not yet in bbolt: appends wait beyond it
)

// commitLinger is how long stage 2 gathers journaled entries before one
// bbolt transaction. Readers of the outbox (the drain) cut it short.
// A variable for tests.
var commitLinger = 25 * time.Millisecond

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type outboxReq struct {
	entry []byte
	id    string
	key   []byte // message key to remember with the entry; nil: none
	sync  bool   // the caller waits for fsync
	done  chan error
}

// journal is the outbox's write path; see above.
type journal struct {
	db *bolt.DB
	f  *os.File

	// Stage 1: the append that finds no write in progress writes for
	// everyone queued meanwhile.
	qmu     sync.Mutex
	queue   []outboxReq
	writing bool
	buf     []byte // owned by the writing append

	// Stage 2 and the file position.
	mu        sync.Mutex
	cond      *sync.Cond // signalled when entries are committed or the loop must act
	off, size int64      // next frame's offset; the file's size
	epoch     uint64
	journaled []outboxReq // in the journal, not yet in bbolt
	written   uint64      // entries journaled so far
	committed uint64      // of those, entries in bbolt
	commits   uint64      // bbolt transactions stage 2 made
	hurry     bool        // a reader waits: commit without lingering
	closing   bool
	broken    error // a journal write or fsync failed: refuse appends until reopened

	wake    chan struct{} // stage 2 has entries to commit, or must stop
	hurryc  chan struct{} // stage 2 must not linger: a reader waits, or close
	stopped chan struct{} // stage 2 has ended

	pendingMu sync.Mutex
	pending   map[string]string // message key -> activation id, journaled but not yet in bbolt

	onCommit atomic.Pointer[func()]
	log      *slog.Logger

	// Counters for OutboxStats.
	appended, failed, fsyncs, fsyncNanos atomic.Uint64
}

// openJournal replays path into db, starts the journal over, and starts
// stage 2.
func openJournal(db *bolt.DB, path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open outbox journal: %w", err)
	}
	j := &journal{
		db: db, f: f,
		epoch:   rand.Uint64(),
		wake:    make(chan struct{}, 1),
		hurryc:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
		pending: map[string]string{},
		log:     slog.Default().With("component", "outbox"),
	}
	j.cond = sync.NewCond(&j.mu)
	if err := j.replay(); err != nil {
		f.Close()
		return nil, fmt.Errorf("outbox journal %s: %w", path, err)
	}
	go func() { j.commitLoop(); close(j.stopped) }()
	return j, nil
}

// replay moves every frame of the journal's first epoch into bbolt, then
// prepares the file for a new epoch.
func (j *journal) replay() error {
	fi, err := j.f.Stat()
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.NewSectionReader(j.f, 0, fi.Size()))
	if err != nil {
		return err
	}
	var batch []outboxReq
	var epoch uint64
	for p := data; ; {
		r, e, n, ok := parseFrame(p)
		if !ok || (len(batch) > 0 && e != epoch) {
			break
		}
		batch, epoch, p = append(batch, r), e, p[n:]
	}
	if len(batch) > 0 {
		if err := j.db.Update(func(tx *bolt.Tx) error { return putBatch(tx, batch) }); err != nil {
			return err
		}
		j.log.Info("outbox journal replayed into the outbox", "entries", len(batch))
	}
	j.size = max(fi.Size(), journalPrealloc)
	if fi.Size() < journalPrealloc {
		if _, err := j.f.WriteAt(make([]byte, journalPrealloc-fi.Size()), fi.Size()); err != nil {
			return err
		}
	}
	if _, err := j.f.WriteAt(make([]byte, frameHeaderLen), 0); err != nil { // ends any later replay here
		return err
	}
	return fdatasync(j.f)
}

func appendFrame(buf []byte, epoch uint64, r *outboxReq) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeaderLen)...)
	binary.LittleEndian.PutUint64(buf[start+8:], epoch)
	buf = binary.AppendUvarint(buf, uint64(len(r.key)))
	buf = append(buf, r.key...)
	buf = append(buf, r.entry...)
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(buf)-start-frameHeaderLen))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+8:], crcTable))
	return buf
}

// parseFrame reads the frame at the start of p: the entry, its epoch and
// the frame's length. ok is false for anything but an intact frame.
func parseFrame(p []byte) (r outboxReq, epoch uint64, n int, ok bool) {
	if len(p) < frameHeaderLen {
		return r, 0, 0, false
	}
	size := binary.LittleEndian.Uint32(p)
	if uint64(size) > uint64(len(p)-frameHeaderLen) || crc32.Checksum(p[8:frameHeaderLen+size], crcTable) != binary.LittleEndian.Uint32(p[4:]) {
		return r, 0, 0, false
	}
	payload := p[frameHeaderLen : frameHeaderLen+size]
	kl, kn := binary.Uvarint(payload)
	if kn <= 0 || kl > uint64(len(payload)-kn) {
		return r, 0, 0, false
	}
	if kl > 0 {
		r.key = payload[kn : kn+int(kl)]
	}
	r.entry = payload[kn+int(kl):]
	var e protocol.OutboxEntry
	if err := e.UnmarshalBinary(r.entry); err != nil || e.ActivationID == "" {
		return r, 0, 0, false
	}
	r.id = e.ActivationID
	return r, binary.LittleEndian.Uint64(p[8:]), frameHeaderLen + int(size), true
}

// errLead hands the journal writer's role to a waiting append.
var errLead = errors.New("lead the next journal write")

// append journals one entry and returns once it is fsync'd (once it is
// written, for an entry that does not ask for sync). Appends group
// themselves without a goroutine in between: the caller that finds no
// write in progress writes and fsyncs the queue itself, others queue
// behind it, and when it is done it hands the role to the first of them.
func (j *journal) append(r outboxReq) error {
	r.done = make(chan error, 1)
	j.qmu.Lock()
	j.queue = append(j.queue, r)
	if j.writing {
		j.qmu.Unlock()
		if err := <-r.done; err != errLead {
			return err
		}
		j.qmu.Lock()
	}
	j.writing = true
	batch := j.queue
	j.queue = nil
	j.qmu.Unlock()

	j.write(batch)

	j.qmu.Lock()
	if len(j.queue) > 0 {
		j.queue[0].done <- errLead
	} else {
		j.writing = false
	}
	j.qmu.Unlock()
	return <-r.done
}

// write journals a batch with one write and one fdatasync, answers its
// callers, and queues it for stage 2.
func (j *journal) write(batch []outboxReq) {
	j.mu.Lock()
	for len(j.journaled) >= maxQueuedEntries && !j.closing {
		j.cond.Wait() // bbolt is far behind: wait for it
	}
	err := j.broken
	if err == nil {
		buf := j.buf[:0]
		for i := range batch {
			buf = appendFrame(buf, j.epoch, &batch[i])
		}
		j.buf = buf
		_, err = j.f.WriteAt(buf, j.off)
		if err == nil && slices.ContainsFunc(batch, func(r outboxReq) bool { return r.sync }) {
			t0 := time.Now()
			err = fdatasync(j.f)
			j.fsyncs.Add(1)
			j.fsyncNanos.Add(uint64(time.Since(t0)))
		}
		if err == nil {
			j.off += int64(len(buf))
			j.size = max(j.size, j.off)
			j.journaled = append(j.journaled, batch...)
			j.written += uint64(len(batch))
			poke(j.wake)
		} else {
			// After a failed fsync the kernel may have dropped the dirty
			// pages and a retry could falsely succeed (PostgreSQL panics
			// here): take no more appends until the agent reopens the
			// state. Zeroing the frame's header keeps a replay from
			// recording what the callers are told failed, if it lands.
			j.broken = err
			j.f.WriteAt(make([]byte, frameHeaderLen), j.off)
			j.log.Error("outbox journal failed; local activations are refused until the agent restarts", "err", err)
		}
	}
	j.mu.Unlock()
	if err != nil {
		j.failed.Add(uint64(len(batch)))
		err = fmt.Errorf("outbox journal: %w", err)
		for _, q := range batch {
			q.done <- err
		}
		return
	}
	j.appended.Add(uint64(len(batch)))
	j.pendingMu.Lock()
	for _, q := range batch {
		if q.key != nil {
			j.pending[string(q.key)] = q.id
		}
	}
	j.pendingMu.Unlock()
	for _, q := range batch {
		q.done <- nil
	}
}

// commitLoop is stage 2: journaled entries into bbolt, then the journal
// started over once bbolt has all of it.
func (j *journal) commitLoop() {
	backoff := 50 * time.Millisecond
	wait := commitLinger
	linger := time.NewTimer(wait)
	for {
		j.mu.Lock()
		for len(j.journaled) == 0 && !j.closing {
			j.mu.Unlock()
			<-j.wake
			j.mu.Lock()
		}
		if len(j.journaled) == 0 { // closing
			j.mu.Unlock()
			return
		}
		if !j.hurry && !j.closing {
			j.mu.Unlock()
			linger.Reset(wait)
			select {
			case <-linger.C:
			case <-j.hurryc:
				linger.Stop()
			}
			j.mu.Lock()
		}
		all := j.journaled
		j.hurry = false
		j.mu.Unlock()

		// The entries are safe in the journal: keep trying bbolt (a full
		// disk may clear) rather than dropping them. On close they stay in
		// the journal for the next Open.
		err := j.db.Update(func(tx *bolt.Tx) error { return putBatch(tx, all) })
		j.mu.Lock()
		if err != nil {
			closing := j.closing
			j.mu.Unlock()
			j.log.Error("moving journaled activations into the outbox failed; retrying", "entries", len(all), "err", err)
			if closing {
				return
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		j.journaled = j.journaled[len(all):]
		j.committed += uint64(len(all))
		j.commits++
		if len(j.journaled) == 0 {
			// Start over: everything in the file is in bbolt. The zero
			// header is not synced; if it is lost, a replay re-adds
			// committed entries, which is harmless.
			j.journaled, j.off, j.epoch = nil, 0, j.epoch+1
			j.f.WriteAt(make([]byte, frameHeaderLen), 0)
			if j.size > 8*journalPrealloc { // a backlog grew it: give the space back
				if err := j.f.Truncate(journalPrealloc); err == nil {
					j.size = journalPrealloc
				}
			}
		}
		j.cond.Broadcast()
		j.mu.Unlock()

		j.pendingMu.Lock()
		for _, q := range all {
			if q.key != nil && j.pending[string(q.key)] == q.id {
				delete(j.pending, string(q.key))
			}
		}
		j.pendingMu.Unlock()
		if f := j.onCommit.Load(); f != nil {
			(*f)()
		}
	}
}

// flush waits until bbolt holds every entry journaled before the call.
func (j *journal) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.written
	if j.committed >= target {
		return
	}
	j.hurry = true
	poke(j.hurryc)
	for j.committed < target && !j.closing {
		j.cond.Wait()
	}
}

// seen reports a message key journaled but not yet in bbolt.
func (j *journal) seen(key []byte) (string, bool) {
	j.pendingMu.Lock()
	defer j.pendingMu.Unlock()
	id, ok := j.pending[string(key)]
	return id, ok
}

// close lets stage 2 move what is journaled into bbolt, stops it and
// closes the file. No append may be running or start after it.
func (j *journal) close() error {
	j.mu.Lock()
	j.closing = true
	j.cond.Broadcast()
	j.mu.Unlock()
	poke(j.wake)
	poke(j.hurryc)
	<-j.stopped
	return j.f.Close()
}

// poke signals c without blocking; one pending signal is enough.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func putBatch(tx *bolt.Tx, batch []outboxReq) error {
	b, err := tx.CreateBucketIfNotExists(bucketOutbox)
	if err != nil {
		return err
	}
	for _, q := range batch {
		if err := b.Put([]byte(q.id), q.entry); err != nil {
			return err
		}
		if q.key != nil {
			if err := remember(tx, q.key, q.id); err != nil {
				return err
			}
		}
	}
	return nil
}
