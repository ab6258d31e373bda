package fleet

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/wispfn/wisp/controller/scheduler"
)

// The scheduling index: the connected sessions in scheduler.Order (agents
// with metrics first, most available memory first, then name and id), so
// that a decision under the default policy reads the first few instead of
// every agent (scheduler.PickRanked). Readers take no lock: the index is
// an immutable slice behind an atomic pointer, replaced whole by its
// writers (copy on write, under schedIndex.mu).
//
// What the order rests on, a session's memory as the scheduler sees it
// (schedulerMemory), is copied into the entry when the session is
// indexed, and a decision reads that copy, so its order and its values
// always agree. Everything else a decision needs is read from the session
// itself at decision time: connected, cordoned, suspect, the invocations
// in flight and the digests held.
//
// When an entry is written:
//   - a session that connects is indexed before its Welcome leaves (it is
//     schedulable once the agent says it is connected), and the session it
//     supersedes leaves the index at once;
//   - an operator's change (control.go) is applied at once, so the
//     scheduler never believes more memory than a cap just set;
//   - a load report that changes the memory marks the session, and the
//     marked sessions are re-indexed together within indexDelay: until
//     then decisions use the previous report, as they would had the new
//     one come indexDelay later;
//   - a session that disconnects is skipped by decisions at once (it is
//     no longer connected) and leaves the index with the next batch.
//
// A write costs O(agents) (a merge into a new slice), a decision
// O(agents read), usually a handful (PickRanked's Cost).

// indexDelay bounds how long a load report waits to be indexed.
const indexDelay = 100 * time.Millisecond

// indexEntry is one session and the memory it was indexed with.
type indexEntry struct {
	s     *Session
	avail uint64 // MemAvail as the scheduler sees it (schedulerMemory)
	known bool   // MemKnown
}

// candidate is the entry as scheduler.Order reads it.
func (e *indexEntry) candidate() scheduler.Candidate {
	return scheduler.Candidate{ID: e.s.ID, Name: e.s.hello.Name, MemAvail: e.avail, MemKnown: e.known}
}

func compareEntries(a, b indexEntry) int {
	ca, cb := a.candidate(), b.candidate()
	return scheduler.Order(&ca, &cb)
}

// schedIndex holds the index and what waits to enter it.
type schedIndex struct {
	cur atomic.Pointer[[]indexEntry]

	mu      sync.Mutex
	dirty   []*Session // marked sessions (Session.idxDirty), to write
	pending bool       // a batch is scheduled
	// current reports whether s is its agent's current session (one that
	// reconnected replaces the last); set by the Fleet.
	current func(s *Session) bool
	// later runs the batch after indexDelay; set by the Fleet.
	later func(func())
}

func (x *schedIndex) init(current func(*Session) bool, later func(func())) {
	x.cur.Store(&[]indexEntry{})
	x.current, x.later = current, later
}

// entries is the index as it stands; never modified.
func (x *schedIndex) entries() []indexEntry { return *x.cur.Load() }

// update writes the marked sessions and ss into the index now.
func (x *schedIndex) update(ss ...*Session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, s := range ss {
		x.markLocked(s)
	}
	x.writeLocked()
}

// mark queues s to be re-indexed within indexDelay.
func (x *schedIndex) mark(s *Session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.markLocked(s)
	if !x.pending {
		x.pending = true
		x.later(func() {
			x.mu.Lock()
			defer x.mu.Unlock()
			x.writeLocked()
		})
	}
}

func (x *schedIndex) markLocked(s *Session) {
	if !s.idxDirty {
		s.idxDirty = true
		x.dirty = append(x.dirty, s)
	}
}

// writeLocked publishes a new index: the old one without the marked
// sessions and those no longer connected, merged with the marked sessions
// still connected and current, indexed with their memory now.
func (x *schedIndex) writeLocked() {
	x.pending = false
	if len(x.dirty) == 0 {
		return
	}
	fresh := make([]indexEntry, 0, len(x.dirty))
	for _, s := range x.dirty {
		if s.connected.Load() && x.current(s) {
			_, avail := s.schedulerMemory()
			known := s.memKnown.Load()
			s.idxAvail.Store(avail)
			s.idxKnown.Store(known)
			fresh = append(fresh, indexEntry{s: s, avail: avail, known: known})
		}
	}
	slices.SortFunc(fresh, compareEntries)
	old := x.entries()
	out := make([]indexEntry, 0, len(old)+len(fresh))
	i := 0
	for _, e := range old {
		if e.s.idxDirty || !e.s.connected.Load() {
			continue
		}
		for i < len(fresh) && compareEntries(fresh[i], e) < 0 {
			out = append(out, fresh[i])
			i++
		}
		out = append(out, e)
	}
	out = append(out, fresh[i:]...)
	for _, s := range x.dirty {
		s.idxDirty = false
	}
	clear(x.dirty)
	x.dirty = x.dirty[:0]
	x.cur.Store(&out)
}

// stale reports whether s's memory as the scheduler sees it is no longer
// what it was indexed with.
func (s *Session) stale() bool {
	_, avail := s.schedulerMemory()
	return avail != s.idxAvail.Load() || s.memKnown.Load() != s.idxKnown.Load()
}

// schedulable reports whether s may be given an invocation now: connected,
// not cordoned, not suspect (it failed to acknowledge one and was not heard
// from since), and not tried already by this invocation.
func (s *Session) schedulable(exclude []*Session) bool {
	return s.connected.Load() && !s.cordoned.Load() && s.suspect.Load() <= s.lastSeen.Load() && !slices.Contains(exclude, s)
}

// pickDefault makes a decision under the default policy from the index:
// the session chosen, and how many sessions the index held.
func (f *Fleet) pickDefault(fn scheduler.Function, exclude []*Session) (*Session, int, error) {
	es := f.index.entries()
	held := unique.Make(fn.Digest)
	i, err := scheduler.PickRanked(len(es), func(i int) (scheduler.Candidate, bool) {
		e := &es[i]
		s := e.s
		if !s.schedulable(exclude) {
			return scheduler.Candidate{}, false
		}
		return scheduler.Candidate{ID: s.ID, Name: s.hello.Name, MemAvail: e.avail, MemKnown: e.known,
			InFlight: int(s.inflight.Load()), HasDigest: s.holds(held)}, true
	}, fn)
	if err != nil {
		return nil, len(es), err
	}
	return es[i].s, len(es), nil
}
