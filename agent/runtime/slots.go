package runtime

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// ShareKey says whose share of the instance slots an invocation uses. Slots,
// and the wait for one, are shared round-robin first between owners, then
// between the functions of an owner; each function has at most
// Config.MaxPerFunction instances and Config.MaxQueuedPerFunction waiting
// calls (see the package doc, Limits).
//
// The agent's executor sets Function to "module/function" and leaves Owner
// empty until functions have owners. An empty Function stands for the
// digest being invoked.
type ShareKey struct {
	Owner    string
	Function string
}

// slotScheduler hands out the Config.MaxConcurrent instance slots. A call
// gets a slot at once when one is free and its function is under its cap;
// otherwise it waits in its function's FIFO queue, and freed slots go to
// the queues in turn: owners round-robin, then that owner's functions
// round-robin. A turn is one slot, whatever the call then costs: a
// function's share of time is bounded by its cap, not by the turns.
//
// Invariant, restored under mu after every change: either no slot is free
// or no function both has a waiter and is under its cap. The fast path of
// acquire relies on it to stay fair without looking at the queues.
type slotScheduler struct {
	perFunction int // instances of one function at once
	queueBound  int // waiting calls of one function

	mu        sync.Mutex
	free      int
	closed    bool
	functions map[ShareKey]*functionShare // running, waiting, or idle (kept up to keptIdle)
	owners    map[string]*ownerShare      // kept once seen: owners are few (subjects)
	turns     fifo[*ownerShare]           // owners that may have an eligible function, in turn order

	waiting int
	stats   slotStats
}

// keptIdle bounds the idle functions the scheduler remembers, so a warm
// call allocates nothing while memory stays bounded whatever the keys.
const keptIdle = 1024

// slotStats are the scheduler's counters, read under its lock.
type slotStats struct {
	waitedFunction, waitedAgent, refused, queueTimeouts, queueCanceled uint64
}

type ownerShare struct {
	turns   fifo[*functionShare] // functions that may be eligible, in turn order
	inTurns bool
}

type functionShare struct {
	owner   *ownerShare
	running int
	waiters []*slotWaiter // FIFO
	inTurns bool
}

func (f *functionShare) idle() bool { return f.running == 0 && len(f.waiters) == 0 && !f.inTurns }

type slotWaiter struct {
	ready   chan struct{} // closed when the slot is granted or the scheduler closes
	granted bool
}

// waitReason is why a call had to queue: its function was at its cap, or every
// slot was busy.
type waitReason uint8

const (
	waitAgent    waitReason = iota // every slot was busy
	waitFunction                   // the function had MaxPerFunction instances
)

func newSlotScheduler(slots, perFunction, queueBound int) *slotScheduler {
	return &slotScheduler{free: slots, perFunction: perFunction, queueBound: queueBound,
		functions: map[ShareKey]*functionShare{}, owners: map[string]*ownerShare{}}
}

// slotDenied says why acquire gave no slot.
type slotDenied struct {
	closed bool       // the runtime is closing
	full   bool       // the function's queue was full: the call did not wait
	why    waitReason // else: why it waited, until its context ended
	ctxErr error
	bound  int // the bound that applied: MaxQueuedPerFunction (full) or MaxPerFunction
}

// acquire takes a slot for key, waiting its turn until ctx ends, and
// returns how long the call waited. After a nil *slotDenied the caller must
// release the returned share.
func (s *slotScheduler) acquire(ctx context.Context, key ShareKey) (*functionShare, time.Duration, *slotDenied) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, 0, &slotDenied{closed: true}
	}
	f := s.functions[key]
	if f == nil {
		f = s.newFunction(key)
	}
	if f.running < s.perFunction && s.free > 0 {
		f.running++
		s.free--
		s.mu.Unlock()
		return f, 0, nil
	}
	if len(f.waiters) >= s.queueBound {
		s.stats.refused++
		s.mu.Unlock()
		return nil, 0, &slotDenied{full: true, bound: s.queueBound}
	}
	why := waitAgent
	if f.running >= s.perFunction {
		why = waitFunction
		s.stats.waitedFunction++
	} else {
		s.stats.waitedAgent++
	}
	w := &slotWaiter{ready: make(chan struct{})}
	f.waiters = append(f.waiters, w)
	s.waiting++
	s.offer(f)
	s.mu.Unlock()

	queued := time.Now()
	select {
	case <-w.ready:
	case <-ctx.Done():
	}
	waited := time.Since(queued)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted && ctx.Err() == nil {
		return f, waited, nil
	}
	if w.granted {
		// Granted as the context ended: the slot goes to the next in turn.
		s.releaseLocked(f)
	} else if i := slices.Index(f.waiters, w); i >= 0 {
		f.waiters = slices.Delete(f.waiters, i, i+1)
		s.waiting--
	}
	if ctx.Err() == nil { // woken by close
		return nil, waited, &slotDenied{closed: true}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.stats.queueTimeouts++
	} else {
		s.stats.queueCanceled++
	}
	return nil, waited, &slotDenied{why: why, ctxErr: ctx.Err(), bound: s.perFunction}
}

// release gives back a slot acquire granted to f.
func (s *slotScheduler) release(f *functionShare) {
	s.mu.Lock()
	s.releaseLocked(f)
	s.mu.Unlock()
}

func (s *slotScheduler) releaseLocked(f *functionShare) {
	f.running--
	s.free++
	if len(f.waiters) > 0 {
		s.offer(f)
	}
	s.dispatch()
}

// newFunction makes key's share (and its owner's), first forgetting the
// idle functions if too many are kept.
func (s *slotScheduler) newFunction(key ShareKey) *functionShare {
	if len(s.functions) >= keptIdle {
		for k, f := range s.functions {
			if f.idle() {
				delete(s.functions, k)
			}
		}
	}
	o := s.owners[key.Owner]
	if o == nil {
		o = &ownerShare{}
		s.owners[key.Owner] = o
	}
	f := &functionShare{owner: o}
	s.functions[key] = f
	return f
}

// offer gives f a turn (and its owner one) if it may use a slot, then
// hands out any free slot.
func (s *slotScheduler) offer(f *functionShare) {
	if f.running >= s.perFunction || len(f.waiters) == 0 {
		return
	}
	if !f.inTurns {
		f.inTurns = true
		f.owner.turns.push(f)
	}
	if o := f.owner; !o.inTurns {
		o.inTurns = true
		s.turns.push(o)
	}
	s.dispatch()
}

// dispatch hands free slots to waiters in turn. Entries whose function can
// no longer use a slot (it reached its cap, or its waiters left) are
// dropped when their turn comes; every step grants a slot or drops an
// entry, so it ends.
func (s *slotScheduler) dispatch() {
	for s.free > 0 {
		o, ok := s.turns.front()
		if !ok {
			return
		}
		f, ok := o.turns.front()
		if !ok {
			s.turns.pop()
			o.inTurns = false
			continue
		}
		if f.running >= s.perFunction || len(f.waiters) == 0 {
			o.turns.pop()
			f.inTurns = false
			continue
		}
		w := f.waiters[0]
		f.waiters = slices.Delete(f.waiters, 0, 1)
		s.waiting--
		f.running++
		s.free--
		w.granted = true
		close(w.ready)
		// Next turn: f goes behind its owner's other functions, the owner
		// behind the other owners.
		o.turns.pop()
		o.turns.push(f)
		s.turns.pop()
		s.turns.push(o)
	}
}

// close refuses every waiting call and every later acquire; running calls
// release their slots as usual.
func (s *slotScheduler) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, f := range s.functions {
		for _, w := range f.waiters {
			close(w.ready)
		}
		s.waiting -= len(f.waiters)
		f.waiters = nil
	}
}

// snapshot returns the counters, the slots in use and the waiting calls.
func (s *slotScheduler) snapshot(slots int) (slotStats, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats, slots - s.free, s.waiting
}

// fifo is a queue that reuses its backing array.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) push(v T) {
	if q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, v)
}

func (q *fifo[T]) front() (T, bool) {
	if q.head == len(q.items) {
		var zero T
		return zero, false
	}
	return q.items[q.head], true
}

func (q *fifo[T]) pop() {
	var zero T
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}
