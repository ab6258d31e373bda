package runtime

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
)

// looping runs calls of loop.wasm under share, each until its own cancel.
type looping struct {
	t       *testing.T
	r       *Runtime
	digest  string
	share   ShareKey
	mu      sync.Mutex
	cancels []context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
}

func startLooping(t *testing.T, r *Runtime, share ShareKey) *looping {
	l := &looping{t: t, r: r, digest: load(t, r, "loop"), share: share, errs: make(chan error, 1000)}
	t.Cleanup(l.stop)
	return l
}

// start launches n more calls.
func (l *looping) start(n int) {
	for range n {
		ctx, cancel := context.WithCancel(context.Background())
		l.mu.Lock()
		l.cancels = append(l.cancels, cancel)
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			_, err := l.r.Invoke(ctx, l.digest, Request{Share: l.share, Limits: Limits{Timeout: time.Minute}})
			l.errs <- err
		}()
	}
}

// cancel ends call i (in start order).
func (l *looping) cancel(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancels[i]()
}

func (l *looping) stop() {
	l.mu.Lock()
	for _, c := range l.cancels {
		c()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// waitSlots waits until the runtime has busy slots in use and waiting calls.
func waitSlots(t *testing.T, r *Runtime, busy, waiting int) {
	t.Helper()
	testwait.For(t, 30*time.Second, fmt.Sprintf("%d busy slots and %d waiting calls", busy, waiting), func() bool {
		s := r.Stats()
		return s.Busy == busy && s.Waiting == waiting
	})
}

// TestFloodedFunctionDoesNotStarveAnother: a looping function flooded with
// calls holds at most its cap of instances, queues up to its bound and is
// refused past it; a call of another function meanwhile gets a slot at once
// and answers. With one shared pool (the old design) the hello call queued
// behind the loops until its deadline.
func TestFloodedFunctionDoesNotStarveAnother(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 4, MaxPerFunction: 2, MaxQueuedPerFunction: 8})
	hello := load(t, r, "hello_c")
	loops := startLooping(t, r, ShareKey{Function: "loop"})
	loops.start(10)
	waitSlots(t, r, 2, 8)

	// One more loop call is refused at once, before it runs.
	res, err := r.Invoke(context.Background(), loops.digest, Request{Share: loops.share})
	checkErr(t, err, ErrOverloaded, "8 calls waiting")
	if res.Queue != 0 || res.Run != 0 {
		t.Fatalf("a refused call waited %v and ran %v", res.Queue, res.Run)
	}

	t0 := time.Now()
	res, err = r.Invoke(context.Background(), hello, Request{Input: []byte(`{"name":"Ada"}`), Share: ShareKey{Function: "hello"}, Limits: Limits{Timeout: 20 * time.Second}})
	if err != nil || string(res.Output) != `{"payload":"Hello Ada!"}` {
		t.Fatalf("hello during the flood: %s %v", res.Output, err)
	}
	if res.Queue != 0 {
		t.Fatalf("hello waited %v for a slot while slots were free", res.Queue)
	}
	t.Logf("hello beside 2 looping instances and 8 queued: %v", time.Since(t0))

	s := r.Stats()
	if s.Busy != 2 || s.Waiting != 8 || s.WaitedFunctionLimit != 8 || s.WaitedAgentFull != 0 || s.RefusedQueueFull != 1 {
		t.Fatalf("stats %+v", s)
	}
	loops.stop()
	for range 10 {
		if err := <-loops.errs; !errors.Is(err, ErrCanceled) {
			t.Fatalf("a canceled loop call: %v", err)
		}
	}
	if s := r.Stats(); s.Busy != 0 || s.Waiting != 0 || s.QueueCanceled != 8 {
		t.Fatalf("after the flood: %+v", s)
	}
	checkHello(t, r, hello)
}

// TestWaitingFunctionIsServedBeforeTheFloodsQueue: every slot is busy and
// one function has many calls queued; a call of another function that
// arrives last gets the next free slot, not the one after the flood's queue.
func TestWaitingFunctionIsServedBeforeTheFloodsQueue(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 2, MaxPerFunction: 2})
	hello := load(t, r, "hello_c")
	loops := startLooping(t, r, ShareKey{Function: "loop"})
	loops.start(2)
	waitSlots(t, r, 2, 0)
	loops.start(10)
	waitSlots(t, r, 2, 10)

	done := make(chan error, 1)
	go func() {
		res, err := r.Invoke(context.Background(), hello, Request{Input: []byte(`{"name":"Ada"}`), Share: ShareKey{Function: "hello"}, Limits: Limits{Timeout: time.Minute}})
		if err == nil && res.Queue == 0 {
			err = errors.New("hello did not wait, yet every slot was busy")
		}
		done <- err
	}()
	waitSlots(t, r, 2, 11)
	loops.cancel(0) // frees one slot
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("hello did not get the freed slot")
	}
	// The slot went to hello and, once hello finished, to one queued loop.
	waitSlots(t, r, 2, 9)
	if s := r.Stats(); s.WaitedFunctionLimit != 10 || s.WaitedAgentFull != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestPerFunctionCapHolds: however many calls of one function arrive, at
// most MaxPerFunction of its instances exist, even with slots free; the
// rest wait and report their wait in Result.Queue.
func TestPerFunctionCapHolds(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 8, MaxPerFunction: 3})
	loops := startLooping(t, r, ShareKey{Function: "loop"})
	loops.start(7)
	waitSlots(t, r, 3, 4)
	// Ending one running call lets exactly one queued call in.
	loops.cancel(0)
	waitSlots(t, r, 3, 3)
	// Other functions still have the other 5 slots.
	other := startLooping(t, r, ShareKey{Function: "other"})
	other.start(3)
	waitSlots(t, r, 6, 3)
}

// TestDefaultPerFunctionCapLeavesACore: by default one function may not
// have an instance on every core.
func TestDefaultPerFunctionCapLeavesACore(t *testing.T) {
	r := newRuntime(t, Config{})
	want := max(1, runtime.GOMAXPROCS(0)-1)
	if r.cfg.MaxPerFunction != want || r.cfg.MaxQueuedPerFunction != DefaultMaxQueuedPerFunction {
		t.Fatalf("MaxPerFunction %d, MaxQueuedPerFunction %d", r.cfg.MaxPerFunction, r.cfg.MaxQueuedPerFunction)
	}
	loops := startLooping(t, r, ShareKey{Function: "loop"})
	loops.start(want + 2)
	waitSlots(t, r, want, 2)
}

// TestDeadlineWhileQueued: a call whose deadline passes in the queue fails
// with ErrTimeout naming the wait, and its caller gets it back on time.
func TestDeadlineWhileQueued(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 1})
	hello := load(t, r, "hello_c")
	loops := startLooping(t, r, ShareKey{Function: "loop"})
	loops.start(1)
	waitSlots(t, r, 1, 0)

	t0 := time.Now()
	res, err := r.Invoke(context.Background(), hello, Request{Share: ShareKey{Function: "hello"}, Limits: Limits{Timeout: 150 * time.Millisecond}})
	checkErr(t, err, ErrTimeout, "for an instance slot (all 1 instance slots busy)")
	if res.Queue < 150*time.Millisecond || time.Since(t0) > 10*time.Second {
		t.Fatalf("queued %v, returned after %v", res.Queue, time.Since(t0))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = r.Invoke(ctx, loops.digest, Request{Share: loops.share})
	checkErr(t, err, ErrTimeout, "the function has 1 instances running, its limit")

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = r.Invoke(ctx, hello, Request{Share: ShareKey{Function: "hello"}})
	checkErr(t, err, ErrCanceled, "while it was queued")

	if s := r.Stats(); s.QueueTimeouts != 2 || s.QueueCanceled != 1 || s.Waiting != 0 || s.Busy != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestCloseRefusesQueuedCalls: closing the runtime ends the wait of queued
// calls with ErrClosed instead of leaving them to their deadline.
func TestCloseRefusesQueuedCalls(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 1})
	hello := load(t, r, "hello_c")
	loops := startLooping(t, r, ShareKey{Function: "loop"})
	loops.start(1)
	waitSlots(t, r, 1, 0)
	done := make(chan error, 1)
	go func() {
		_, err := r.Invoke(context.Background(), hello, Request{Limits: Limits{Timeout: time.Minute}})
		done <- err
	}()
	waitSlots(t, r, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.Close(ctx)
	select {
	case err := <-done:
		checkErr(t, err, ErrClosed, "queued")
	case <-time.After(30 * time.Second):
		t.Fatal("a queued call outlived Close")
	}
}

// grantOrder queues calls of the given keys (in that order) behind a held
// slot, frees it, and returns the order in which they got the slot. It
// runs in a synctest bubble, so "queued" means blocked, not slept on.
func grantOrder(t *testing.T, keys []ShareKey) []string {
	var got []string
	synctest.Test(t, func(t *testing.T) {
		s := newSlotScheduler(1, 100, 100)
		hold, _, d := s.acquire(context.Background(), ShareKey{Function: "holder"})
		if d != nil {
			t.Fatal(d)
		}
		var mu sync.Mutex
		for _, k := range keys {
			go func() {
				f, _, d := s.acquire(context.Background(), k)
				if d != nil {
					t.Error(d)
					return
				}
				mu.Lock()
				got = append(got, k.Owner+"/"+k.Function)
				mu.Unlock()
				s.release(f)
			}()
			synctest.Wait() // queued before the next one arrives
		}
		s.release(hold)
		synctest.Wait()
		checkDrained(t, s, 1)
	})
	return got
}

func keys(owner, function string, n int) []ShareKey {
	return slices.Repeat([]ShareKey{{Owner: owner, Function: function}}, n)
}

// TestRoundRobinOrder: freed slots go round-robin between functions, and
// between owners before functions, whatever each one has queued.
func TestRoundRobinOrder(t *testing.T) {
	t.Run("functions", func(t *testing.T) {
		got := grantOrder(t, slices.Concat(keys("", "a", 5), keys("", "b", 3), keys("", "c", 1)))
		want := []string{"/a", "/b", "/c", "/a", "/b", "/a", "/b", "/a", "/a"}
		if !slices.Equal(got, want) {
			t.Fatalf("grant order %v, want %v", got, want)
		}
	})
	t.Run("owners then functions", func(t *testing.T) {
		// o1 has two functions, o2 one: o2 still gets every other slot.
		got := grantOrder(t, slices.Concat(keys("o1", "f", 3), keys("o1", "g", 3), keys("o2", "h", 3)))
		want := []string{"o1/f", "o2/h", "o1/g", "o2/h", "o1/f", "o2/h", "o1/g", "o1/f", "o1/g"}
		if !slices.Equal(got, want) {
			t.Fatalf("grant order %v, want %v", got, want)
		}
	})
}

// TestSchedulerNeverExceedsBounds hammers the scheduler from many
// goroutines with mixed keys, cancellations and releases, and checks the
// slot and per-function bounds at every grant.
func TestSchedulerNeverExceedsBounds(t *testing.T) {
	const slots, perFunction = 3, 1
	s := newSlotScheduler(slots, perFunction, 1000)
	var mu sync.Mutex
	running := map[ShareKey]int{}
	total := 0
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := ShareKey{Owner: fmt.Sprint(i % 2), Function: fmt.Sprint(i / 2 % 2)}
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%5)*time.Millisecond)
			defer cancel()
			if i%5 == 0 {
				ctx = context.Background()
			}
			f, _, d := s.acquire(ctx, k)
			if d != nil {
				if d.ctxErr == nil {
					t.Errorf("denied without a context error: %+v", d)
				}
				return
			}
			mu.Lock()
			running[k]++
			total++
			if running[k] > perFunction || total > slots {
				t.Errorf("%v: %d running, %d in all", k, running[k], total)
			}
			mu.Unlock()
			time.Sleep(200 * time.Microsecond)
			mu.Lock()
			running[k]--
			total--
			mu.Unlock()
			s.release(f)
		}()
	}
	wg.Wait()
	checkDrained(t, s, slots)
}

// checkDrained checks that nothing runs, waits or holds a turn.
func checkDrained(t *testing.T, s *slotScheduler, slots int) {
	t.Helper()
	if _, busy, waiting := s.snapshot(slots); busy != 0 || waiting != 0 {
		t.Errorf("%d busy, %d waiting after all calls ended", busy, waiting)
	}
	for k, f := range s.functions {
		if !f.idle() {
			t.Errorf("%v: %d running, %d waiting, in turns %v", k, f.running, len(f.waiters), f.inTurns)
		}
	}
	for name, o := range s.owners {
		if o.inTurns {
			t.Errorf("owner %q still holds a turn", name)
		}
	}
}

// TestIdleFunctionsAreBounded: the scheduler keeps idle functions (a warm
// call then allocates nothing) but at most keptIdle of them.
func TestIdleFunctionsAreBounded(t *testing.T) {
	s := newSlotScheduler(4, 1, 1)
	for i := range 5 * keptIdle {
		f, _, d := s.acquire(context.Background(), ShareKey{Owner: fmt.Sprint(i % 3), Function: fmt.Sprint(i)})
		if d != nil {
			t.Fatal(d)
		}
		s.release(f)
	}
	if len(s.functions) > keptIdle {
		t.Fatalf("%d functions kept", len(s.functions))
	}
	k := ShareKey{Function: "warm"}
	f, _, _ := s.acquire(context.Background(), k)
	s.release(f)
	if n := testing.AllocsPerRun(100, func() {
		f, _, _ := s.acquire(context.Background(), k)
		s.release(f)
	}); n != 0 {
		t.Fatalf("a warm acquire and release allocate %v times", n)
	}
}

func TestSlotErrorsNameTheBound(t *testing.T) {
	r := newRuntime(t, Config{MaxConcurrent: 3, MaxPerFunction: 2, MaxQueuedPerFunction: 5})
	for _, tt := range []struct {
		d    slotDenied
		want *Error
		msg  string
	}{
		{slotDenied{full: true, bound: 5}, ErrOverloaded, "already has 5 calls waiting"},
		{slotDenied{why: waitAgent, ctxErr: context.DeadlineExceeded, bound: 2}, ErrTimeout, "all 3 instance slots busy"},
		{slotDenied{why: waitFunction, ctxErr: context.Canceled, bound: 2}, ErrCanceled, "the function has 2 instances running"},
		{slotDenied{closed: true}, ErrClosed, "closed"},
	} {
		err := r.slotError(&tt.d, time.Second)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%+v: %v", tt.d, err)
		}
	}
}
