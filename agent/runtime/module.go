package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// module is one compiled digest in the runtime's LRU.
type module struct {
	r        *Runtime
	info     Info
	compiled wazero.CompiledModule

	// cost is the memory the compiled module is estimated to hold
	// (compiledCost); lastUse the last invocation's start (Unix ns).
	cost    int64
	lastUse atomic.Int64
	// denseMemory: its last call touched most of its linear memory, so
	// its instances take dense regions (memoryPool).
	denseMemory atomic.Bool

	mu      sync.Mutex
	refs    int
	evicted bool
	closed  bool

	// Spare instances, for modules whose instantiation is slow (Go guests).
	// fastest is the quickest instantiation seen (ns): the module's intrinsic
	// cost, unlike one sample that a GC pause or a page fault can inflate.
	fastest   atomic.Int64
	slow      atomic.Bool
	refilling atomic.Bool
	spareCh   chan *instance
}

// instance is one instantiated module, used for exactly one invocation.
type instance struct {
	mod    api.Module
	invoke api.Function
	alloc  *capAllocator
	slot   *slot
	stop   stopper
}

func (i *instance) close() { i.mod.Close(context.Background()) }

func (m *module) acquire() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.refs++
	return true
}

func (m *module) release() {
	m.mu.Lock()
	m.refs--
	done := m.evicted && m.refs == 0 && !m.closed
	if done {
		m.closed = true
	}
	m.mu.Unlock()
	if done {
		m.free()
	}
}

// evict is the LRU's callback: the module closes once no call holds it.
func (m *module) evict() {
	m.mu.Lock()
	m.evicted = true
	done := m.refs == 0 && !m.closed
	if done {
		m.closed = true
	}
	m.mu.Unlock()
	if done {
		m.free()
	}
}

func (m *module) free() {
	m.drainSpares()
	m.compiled.Close(context.Background())
	m.r.releaseSoon()
}

func (m *module) drainSpares() {
	for {
		select {
		case in := <-m.spareCh:
			m.r.spares.Add(-1)
			in.close()
		default:
			return
		}
	}
}

// instantiate makes a fresh FunLess-ABI instance with the environment env
// (nil for a spare) and runs _initialize.
func (m *module) instantiate(ctx context.Context, memLimit uint64, env []string) (*instance, error) {
	in := &instance{alloc: &capAllocator{limit: memLimit, pool: &m.r.memory, dense: &m.denseMemory}, slot: &slot{c: callFrom(ctx)}}
	mod, err := m.r.rt.InstantiateModule(withAllocator(ctx, in.alloc), m.compiled, m.r.moduleConfig(in.slot, false, env))
	if err != nil {
		return in, err
	}
	in.mod, in.stop = mod, newStopper(mod)
	if err := in.start(ctx, m.info.Initialize); err != nil {
		mod.Close(context.Background())
		in.mod = nil
		return in, err
	}
	in.invoke = mod.ExportedFunction("__invoke")
	return in, nil
}

// start runs, with the stop armed, the module's start function if it had
// one (see addStopCheck), then _initialize when initialize is set. An
// instance whose stop fired is not used again, even if it finished first
// (a spare would trap at its first loop).
func (in *instance) start(ctx context.Context, initialize bool) (err error) {
	f := in.mod.ExportedFunction(startExport)
	if f == nil && !initialize {
		return nil
	}
	disarm := in.stop.arm(ctx)
	defer func() {
		if !disarm() && err == nil {
			err = canceled(ctx, "starting the instance")
		}
	}()
	if f != nil {
		if _, err := f.Call(ctx); err != nil {
			return err
		}
	}
	if initialize {
		_, err := in.mod.ExportedFunction("_initialize").Call(ctx)
		return err
	}
	return nil
}

// linearCap is the linear memory an instance may take under a memory cap
// of total bytes: tables are host memory too, and count against the cap.
func (m *module) linearCap(total uint64) uint64 {
	c := total - min(total, m.info.TableBytes)
	return c - c%pageSize
}

func (m *module) takeSpare(c *call) *instance {
	if c.limits.MemoryBytes != m.r.cfg.Limits.MemoryBytes-m.r.cfg.Limits.MemoryBytes%pageSize {
		return nil // spares are built with the default memory cap
	}
	if len(c.env) > 0 {
		// Spares are built without an environment (they are shared by every
		// function of the digest): wasi-libc may read environ in
		// _initialize, so a call with env gets its own instance.
		return nil
	}
	select {
	case in := <-m.spareCh:
		m.r.spares.Add(-1)
		return in
	default:
		return nil
	}
}

// maxSpares bounds spare instances across all modules: each holds a guest's
// whole linear memory (a Go guest starts with several MiB).
const maxSpares = 16

// refill tops up the spare instances in the background.
func (m *module) refill() {
	if m.r.cfg.SpareInstances <= 0 || !m.refilling.CompareAndSwap(false, true) {
		return
	}
	if !m.r.begin() {
		m.refilling.Store(false)
		return
	}
	if !m.acquire() {
		m.r.active.Done()
		m.refilling.Store(false)
		return
	}
	go func() {
		defer m.r.active.Done()
		defer m.refilling.Store(false)
		defer m.release()
		limit := m.linearCap(m.r.cfg.Limits.MemoryBytes - m.r.cfg.Limits.MemoryBytes%pageSize)
		for len(m.spareCh) < cap(m.spareCh) && m.r.spares.Load() < maxSpares {
			m.mu.Lock()
			stop := m.evicted
			m.mu.Unlock()
			m.r.mu.RLock()
			stop = stop || m.r.closed
			m.r.mu.RUnlock()
			if stop {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), m.r.cfg.Limits.Timeout)
			tracked := m.r.cfg.Track(ctx, m.info.Digest, WorkSpare)
			in, err := m.instantiate(ctx, limit, nil)
			tracked()
			cancel()
			if err != nil {
				m.r.cfg.Logger.Warn("spare instance failed", "digest", m.info.Digest, "err", err)
				return
			}
			m.r.spares.Add(1)
			select {
			case m.spareCh <- in:
			default:
				m.r.spares.Add(-1)
				in.close()
				return
			}
		}
	}()
}

// noteInstantiate keeps the fastest instantiation time and decides whether
// the module deserves spare instances.
func (m *module) noteInstantiate(d time.Duration) {
	for {
		old := m.fastest.Load()
		if old != 0 && old <= int64(d) {
			break
		}
		if m.fastest.CompareAndSwap(old, int64(d)) {
			break
		}
	}
	m.slow.Store(time.Duration(m.fastest.Load()) > m.r.cfg.SpareThreshold)
}

func (m *module) invokeFunLess(ctx context.Context, c *call, res *Result) error {
	start := time.Now()
	in := m.takeSpare(c)
	if in != nil {
		in.slot.c = c
		res.Spare = true
		m.r.stats.spareHits.Add(1)
	} else {
		var err error
		in, err = m.instantiate(ctx, c.linearCap, c.env)
		res.Instantiate = time.Since(start)
		if err != nil {
			return classify(ctx, err, c, in.alloc)
		}
		m.noteInstantiate(res.Instantiate)
	}
	defer in.close()
	if m.slow.Load() {
		m.refill()
	}
	runStart := time.Now()
	disarm := in.stop.arm(ctx)
	ret, err := in.invoke.Call(ctx, uint64(len(c.input)))
	disarm()
	res.Run = time.Since(runStart)
	if err != nil {
		return classify(ctx, err, c, in.alloc)
	}
	code := api.DecodeI32(ret[0])
	switch {
	case c.errSet || code != 0:
		msg := string(c.errMsg)
		if !c.errSet {
			msg = fmt.Sprintf("__invoke returned %d without an error message", code)
		}
		return &Error{Kind: KindGuestError, Msg: msg}
	case c.outputTooBig:
		return newError(KindOutputTooLarge, "output exceeds the limit of %d bytes", c.limits.OutputBytes)
	case !c.outputSet:
		return newError(KindOutputNotJSON, "__invoke returned 0 without calling __insert_response")
	}
	if !json.Valid(c.output) {
		return newError(KindOutputNotJSON, "output is not JSON: %s", preview(c.output))
	}
	res.Output = c.output
	return nil
}

// runCommand runs a WASI command: input on stdin, output from stdout.
func (m *module) runCommand(ctx context.Context, c *call, res *Result) error {
	s := &slot{c: c}
	alloc := &capAllocator{limit: c.linearCap, pool: &m.r.memory, dense: &m.denseMemory}
	cfg := m.r.moduleConfig(s, true, c.env).WithStdin(bytes.NewReader(c.input))
	start := time.Now()
	mod, err := m.r.rt.InstantiateModule(withAllocator(ctx, alloc), m.compiled, cfg)
	if err == nil {
		defer mod.Close(context.Background())
		in := &instance{mod: mod, stop: newStopper(mod)}
		if err = in.start(ctx, false); err == nil {
			disarm := in.stop.arm(ctx)
			_, err = mod.ExportedFunction("_start").Call(ctx)
			disarm()
		}
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 {
			err = nil // proc_exit(0), as wazero's own start would take it
		}
	}
	res.Run = time.Since(start)
	if err != nil {
		return classify(ctx, err, c, alloc)
	}
	if c.stdout.dropped > 0 {
		return newError(KindOutputTooLarge, "stdout exceeds the limit of %d bytes", c.limits.OutputBytes)
	}
	out := bytes.TrimSpace(c.stdout.Bytes())
	if len(out) == 0 {
		return newError(KindOutputNotJSON, "the command wrote nothing to stdout")
	}
	if !json.Valid(out) {
		return newError(KindOutputNotJSON, "stdout is not JSON: %s", preview(out))
	}
	res.Output = out
	return nil
}

func preview(b []byte) string {
	const n = 64
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
