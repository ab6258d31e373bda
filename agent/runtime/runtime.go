package runtime

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wispfn/wisp/cache"
	"github.com/wispfn/wisp/protocol"
)

// Runtime compiles and runs wasm functions. It is safe for concurrent use;
// every invocation gets a fresh instance.
type Runtime struct {
	cfg    Config
	rt     wazero.Runtime
	ccache wazero.CompilationCache
	client *http.Client
	// markers records, per wazero version and preparedFormat, which digests
	// were compiled into the disk cache, so a restart can tell a disk hit
	// from a cold compile.
	markers string

	modules  *cache.LRU[string, *module]
	compiler *compiler
	// wazeroDir is the on-disk compilation cache workers compile into
	// ("" without one, or with the interpreter).
	wazeroDir string

	mu      sync.RWMutex
	loading map[string]*loadCall
	// preparing are the Prepare calls under way (see flight).
	preparing map[string]*loadCall
	// sweeper evicts the modules idle for Config.ModuleIdle until
	// stopSweep closes.
	sweeper   *time.Ticker
	stopSweep chan struct{}
	closed    bool
	// active counts invocations and background spare refills, so Close can
	// let them finish before it releases what they use.
	active sync.WaitGroup

	// baseConfig is what every instance's configuration starts from (see
	// moduleConfig).
	baseConfig wazero.ModuleConfig

	spares    atomic.Int64 // spare instances alive, all modules
	releasing atomic.Bool  // a releaseSoon is pending
	slots     *slotScheduler
	memory    memoryPool

	stats struct {
		compiles, diskHits, memHits, invocations, spareHits, evictions, idleEvictions atomic.Uint64
	}
}

// loadCall is one compilation of a digest, shared by every Load of it
// that arrives meanwhile. It runs detached from its callers (each waits
// within its own context) and stops only when its digest is evicted or the
// runtime closes.
type loadCall struct {
	done   chan struct{}
	cancel context.CancelFunc
	info   Info
	err    error
}

// Request is one invocation.
type Request struct {
	// Input is the JSON input (FunLess: the compact JSON of args). Empty means {}.
	Input []byte
	// AllowedHosts may be reached by __http_request: "*" (any host), a
	// host name or IP address (any port), "host:port" (that port only), or
	// "*.example.com" (any name under example.com, not example.com itself).
	// Empty: none.
	AllowedHosts []string
	// Env is the guest's WASI environment, "NAME=value" entries (both
	// ABIs; at most MaxEnvVars entries and MaxEnvBytes in all, else
	// ErrInvalidInput). Empty: no environment, as FunLess gives.
	Env []string
	// Limits override the runtime's defaults field by field (zero = default).
	Limits Limits
	// Share says whose share of the instance slots the call uses (see
	// ShareKey). Zero: the digest's own.
	Share ShareKey
}

// Result is what an invocation produced. Invoke returns it even on error,
// with the logs and timings gathered so far.
type Result struct {
	// Output is the function's JSON output (compact or as the guest wrote it).
	Output []byte
	ABI    ABI
	// Logs are the lines the guest wrote (and the host's own lines about
	// it), in the order they were captured, each with its capture time and
	// stream: at most Limits.LogLines of them holding at most
	// Limits.LogBytes of text, then, when the bound dropped anything, one
	// protocol.StreamPlatform line saying how much (TruncatedMarker).
	Logs []protocol.LogLine
	// LogsDropped counts the lines the bound dropped whole; LogBytesDropped
	// the bytes it dropped (of those lines and of lines it cut).
	LogsDropped, LogBytesDropped int
	// Queue is the time spent waiting for an instance slot (MaxConcurrent,
	// MaxPerFunction).
	Queue time.Duration
	// Instantiate is the time to get an instance (zero-ish for a spare),
	// Run the time spent in the guest.
	Instantiate, Run time.Duration
	// Spare is true when a pre-instantiated instance served the call.
	Spare bool
}

// Stats are counters since the runtime started.
type Stats struct {
	// Compiles counts modules compiled, DiskCacheHits those whose compiled
	// code came from the on-disk cache, MemoryCacheHits Loads of a digest
	// already in memory.
	Compiles, DiskCacheHits, MemoryCacheHits uint64
	Invocations                              uint64
	// SpareHits counts invocations served by a pre-instantiated instance.
	SpareHits uint64
	// Modules and ModuleBytes describe the in-memory cache of compiled
	// modules: how many, and their estimated memory (see
	// Config.MaxCompiledBytes). Evictions counts the modules dropped
	// from it, IdleEvictions those of them dropped for being idle.
	Modules                  int
	ModuleBytes              int64
	Evictions, IdleEvictions uint64
	// Spares is how many spare instances are alive.
	Spares int64

	// Instance slots: Busy are in use and Waiting calls wait for one now.
	Busy, Waiting int
	// WaitedFunctionLimit and WaitedAgentFull count the calls that had to
	// wait for a slot because their function had MaxPerFunction instances,
	// or because all MaxConcurrent slots were busy.
	WaitedFunctionLimit, WaitedAgentFull uint64
	// RefusedQueueFull counts calls refused with ErrOverloaded;
	// QueueTimeouts and QueueCanceled those whose deadline passed, or whose
	// caller gave up, while they waited.
	RefusedQueueFull, QueueTimeouts, QueueCanceled uint64
}

// New builds a Runtime. It does no I/O besides creating cfg.CacheDir.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Runtime{cfg: cfg, loading: map[string]*loadCall{}, preparing: map[string]*loadCall{}, client: cfg.HTTPClient, baseConfig: newBaseConfig(),
		slots: newSlotScheduler(cfg.MaxConcurrent, cfg.MaxPerFunction, cfg.MaxQueuedPerFunction)}
	r.compiler = newCompiler(cfg.ModuleLimits, cfg.Compile, cfg.Engine)
	var cc wazero.CompilationCache
	if r.client == nil {
		r.client = defaultHTTPClient()
	}
	if cfg.CacheDir != "" && cfg.Engine == EngineCompiler {
		dir := filepath.Join(cfg.CacheDir, "wazero")
		var err error
		cc, err = wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("runtime: compilation cache in %s: %w", dir, err)
		}
		r.ccache, r.wazeroDir = cc, dir
		r.markers = filepath.Join(cfg.CacheDir, "compiled", wazeroVersion()+"-"+preparedFormat)
		if err := os.MkdirAll(r.markers, 0o700); err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, runtimeConfig(cfg.Engine, cc))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		r.rt.Close(ctx)
		return nil, fmt.Errorf("runtime: wasi: %w", err)
	}
	b := r.rt.NewHostModuleBuilder(flModule)
	host := []struct {
		name string
		fn   api.GoModuleFunc
	}{
		{"__get_input_data", hostGetInputData},
		{"__insert_response", hostInsertResponse},
		{"__insert_error", hostInsertError},
		{"__console_log", hostConsoleLog},
		{"__http_request", hostHTTPRequest},
	}
	for _, h := range host {
		params := make([]api.ValueType, flImports[h.name])
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		b.NewFunctionBuilder().WithGoModuleFunction(h.fn, params, nil).Export(h.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		r.rt.Close(ctx)
		return nil, fmt.Errorf("runtime: fl_imps: %w", err)
	}
	r.modules = cache.NewLRU(cache.Limits{Entries: cfg.MaxModules, Cost: cfg.MaxCompiledBytes}, func(_ string, m *module) {
		r.stats.evictions.Add(1)
		m.evict()
	})
	if cfg.ModuleIdle > 0 {
		r.sweeper, r.stopSweep = time.NewTicker(max(cfg.ModuleIdle/4, time.Millisecond)), make(chan struct{})
		go r.sweep(r.sweeper.C, r.stopSweep)
	}
	return r, nil
}

// Engine reports "compiler" or "interpreter".
func (r *Runtime) Engine() string { return r.cfg.Engine }

// Limits returns the default per-invocation limits in force.
func (r *Runtime) Limits() Limits { return r.cfg.Limits }

// Stats returns the runtime's counters.
func (r *Runtime) Stats() Stats {
	cs := r.modules.Stats()
	ss, busy, waiting := r.slots.snapshot(r.cfg.MaxConcurrent)
	return Stats{
		Busy: busy, Waiting: waiting,
		WaitedFunctionLimit: ss.waitedFunction, WaitedAgentFull: ss.waitedAgent,
		RefusedQueueFull: ss.refused, QueueTimeouts: ss.queueTimeouts, QueueCanceled: ss.queueCanceled,

		Compiles:        r.stats.compiles.Load(),
		DiskCacheHits:   r.stats.diskHits.Load(),
		MemoryCacheHits: r.stats.memHits.Load(),
		Invocations:     r.stats.invocations.Load(),
		SpareHits:       r.stats.spareHits.Load(),
		Modules:         cs.Entries,
		ModuleBytes:     cs.Cost,
		Evictions:       r.stats.evictions.Load(),
		IdleEvictions:   r.stats.idleEvictions.Load(),
		Spares:          r.spares.Load(),
	}
}

// Load compiles code, unless a module with the same digest is already in
// memory, and keeps it for Invoke. Concurrent Loads of one digest compile
// once. The code is checked against Config.ModuleLimits before anything
// compiles it, and compiled under Config.Compile (see CompileBudget); the
// compilation goes on when ctx is done (another Load may want it) and stops
// only when the digest is evicted or the runtime closes.
//
// # Errors
//
// ErrNotWasm, ErrInvalidModule, ErrUnknownImport, ErrMissingExport as for
// Inspect; ErrModuleLimit, ErrCompileBudget; ErrCanceled or ErrTimeout when
// ctx is done first (or the digest was evicted); ErrClosed.
func (r *Runtime) Load(ctx context.Context, code []byte) (Info, error) {
	return r.flight(ctx, code, true)
}

// Prepare makes a later Load of code cheap without making room for it in
// memory: the agent calls it when the controller pushes code, so that
// memory holds the functions that are called, not every function pushed.
// With a disk compilation cache (compiler engine and Config.CacheDir) it
// checks and compiles code into that cache, under the same limits and
// budget as Load, and keeps the compiled module in memory only if it fits
// there without evicting another (Config.MaxCompiledBytes, MaxModules);
// else the first call loads it from disk (DiskCacheHits). Without a disk
// cache (the interpreter, or no CacheDir) it only checks code against
// ModuleLimits; the first call compiles. A digest already in memory is left
// there. Info is complete only when Prepare compiled (Info.Compiled).
//
// # Errors
//
// As for Load.
func (r *Runtime) Prepare(ctx context.Context, code []byte) (Info, error) {
	return r.flight(ctx, code, false)
}

// flight runs one compilation of code at a time per digest and purpose
// (keep it in memory, or only prepare it), shared by the callers that
// arrive meanwhile; a Prepare also joins a Load under way.
func (r *Runtime) flight(ctx context.Context, code []byte, keep bool) (Info, error) {
	if err := checkMagic(code); err != nil {
		return Info{}, err
	}
	digest := Digest(code)
	if m, ok := r.modules.Get(digest); ok {
		r.stats.memHits.Add(1)
		return m.info, nil // Compiled and DiskCacheHit are false in m.info
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return Info{}, ErrClosed
	}
	if _, loading := r.loading[digest]; keep && !loading {
		if pc, ok := r.preparing[digest]; ok {
			// A push is compiling it into the disk cache: wait, then
			// load it from there, rather than compile it twice.
			r.mu.Unlock()
			select {
			case <-pc.done:
				return r.flight(ctx, code, keep)
			case <-ctx.Done():
				return Info{}, canceled(ctx, "waiting for the module to compile")
			}
		}
	}
	flights := r.loading
	if !keep {
		flights = r.preparing
	}
	lc, ok := flights[digest]
	if !ok && !keep {
		lc, ok = r.loading[digest]
	}
	if !ok {
		// A compilation may have finished since the lookup above: it adds
		// the module before it leaves r.loading, both seen under r.mu.
		if m, ok := r.modules.Peek(digest); ok {
			r.mu.Unlock()
			r.stats.memHits.Add(1)
			return m.info, nil
		}
		var lctx context.Context
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		lc = &loadCall{done: make(chan struct{}), cancel: cancel}
		flights[digest] = lc
		r.active.Add(1)
		go func() {
			defer r.active.Done()
			lc.info, lc.err = r.compile(lctx, digest, code, keep)
			cancel()
			r.mu.Lock()
			if flights[digest] == lc {
				delete(flights, digest)
			}
			r.mu.Unlock()
			close(lc.done)
		}()
	}
	r.mu.Unlock()
	select {
	case <-lc.done:
		return lc.info, lc.err
	case <-ctx.Done():
		return Info{}, canceled(ctx, "waiting for the module to compile")
	}
}

// compile checks and compiles code; keep puts the compiled module in the
// in-memory cache, else (Prepare) it goes only to the disk cache, if any.
func (r *Runtime) compile(ctx context.Context, digest string, code []byte, keep bool) (Info, error) {
	prof, err := r.compiler.check(digest, code)
	if err != nil {
		return Info{}, err
	}
	if prof.TableBytes > r.cfg.Limits.MemoryBytes {
		return Info{}, newError(KindModuleLimit, "the module's tables can take %d bytes, over the memory cap of %d bytes", prof.TableBytes, r.cfg.Limits.MemoryBytes)
	}
	marker := ""
	diskHit := false
	if r.markers != "" {
		marker = filepath.Join(r.markers, strings.TrimPrefix(digest, "sha256:"))
		_, err := os.Stat(marker)
		diskHit = err == nil
	}
	if !keep && marker == "" {
		// No disk cache to prepare into: compiling now would only hold
		// memory for a function that may never be called.
		return Info{Digest: digest, Size: len(code), TableBytes: prof.TableBytes}, nil
	}
	if !keep && diskHit {
		return Info{Digest: digest, Size: len(code), TableBytes: prof.TableBytes, DiskCacheHit: true}, nil
	}
	// A digest already in the disk cache compiled within its budget once:
	// loading it back costs little, whatever its profile.
	if !diskHit && r.compiler.isolated(prof) {
		dir := ""
		if r.cfg.Engine == EngineCompiler {
			dir = r.wazeroDir
		}
		winfo, err := r.compiler.inWorker(ctx, digest, code, dir)
		if err != nil {
			return Info{}, err
		}
		if !keep { // the worker left the compiled code in the disk cache
			r.stats.compiles.Add(1)
			r.writeMarker(marker)
			winfo.TableBytes, winfo.Compiled = prof.TableBytes, true
			return winfo, nil
		}
	}
	prepared, err := prepareCode(code, r.cfg.Engine)
	if err != nil {
		return Info{}, err
	}
	release, err := r.compiler.inProcess(ctx, prof)
	if err != nil {
		return Info{}, err
	}
	// Only a compilation in this process can take the agent down with it:
	// a worker's cannot.
	tracked := r.cfg.Track(ctx, digest, WorkCompile)
	cctx := ctx
	if r.cfg.Engine == EngineInterpreter {
		cctx = experimental.WithFunctionListenerFactory(ctx, deadlineListener{})
	}
	cm, err := r.rt.CompileModule(cctx, prepared)
	tracked()
	release()
	if err != nil {
		return Info{}, &Error{Kind: KindInvalidModule, Msg: err.Error(), Err: err}
	}
	info, err := describe(cm, code)
	if err != nil {
		cm.Close(context.Background())
		return Info{}, err
	}
	info.TableBytes = prof.TableBytes
	cost := r.compiledCost(prof, len(code))
	if !keep && !r.hasRoom(cost) {
		cm.Close(context.Background())
		r.releaseSoon() // what compiling took from the Go heap
		r.stats.compiles.Add(1)
		r.writeMarker(marker)
		info.Compiled = true
		return info, nil
	}
	m := &module{r: r, info: info, compiled: cm, spareCh: make(chan *instance, max(r.cfg.SpareInstances, 0)),
		cost: cost}
	m.lastUse.Store(time.Now().UnixNano())
	// Evict cancels ctx under r.mu: checking it under r.mu too means a
	// module evicted while it compiled is never kept.
	r.mu.Lock()
	if ctx.Err() != nil {
		r.mu.Unlock()
		cm.Close(context.Background())
		return Info{}, canceled(ctx, "compiling")
	}
	r.modules.Add(digest, m, min(m.cost, r.cfg.MaxCompiledBytes))
	r.mu.Unlock()
	r.stats.compiles.Add(1)
	if diskHit {
		r.stats.diskHits.Add(1)
	} else {
		r.writeMarker(marker)
	}
	r.cfg.Logger.Debug("module loaded", "digest", digest, "abi", info.ABI, "disk_cache_hit", diskHit)
	info.Compiled, info.DiskCacheHit = true, diskHit
	return info, nil
}

// releaseSoon gives the memory of closed modules (and of compiling one only
// for the disk cache) back to the system within releaseDelay: their
// compiled code is unmapped at once, but the Go heap they held (the decoded
// module, what compiling or loading used) would stay with the process until
// the collector's own pace returns it. At most one release per
// releaseDelay, however many modules close.
func (r *Runtime) releaseSoon() {
	if r.releasing.CompareAndSwap(false, true) {
		time.AfterFunc(releaseDelay, func() {
			r.releasing.Store(false)
			debug.FreeOSMemory()
		})
	}
}

const releaseDelay = time.Second

// sweep evicts, at every tick, the modules no call used for
// Config.ModuleIdle, until stop closes.
func (r *Runtime) sweep(tick <-chan time.Time, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case now := <-tick:
			r.evictIdle(now)
		}
	}
}

func (r *Runtime) evictIdle(now time.Time) {
	for _, digest := range r.modules.Keys() {
		m, ok := r.modules.Peek(digest)
		if ok && now.Sub(time.Unix(0, m.lastUse.Load())) >= r.cfg.ModuleIdle && r.modules.Remove(digest) {
			r.stats.idleEvictions.Add(1)
		}
	}
}

// Estimates of the memory a compiled module holds (Config.MaxCompiledBytes),
// measured on amd64 with 100 copies of the Rust and C fixtures
// (docs/decisions.md, issue 16): the optimising compiler's machine code is
// about 5 bytes per byte of function bodies (hello_fl_rust: 264 KiB of
// disk-cache file for 55 KB of bodies), the interpreter's compiled form about
// 34 (1.8 MiB of Go heap for hello_fl_rust), wazero's decoded module about
// 2.3 bytes per byte of wasm, and each module some fixed tens of KiB. The
// factors round up.
const (
	compiledCodeFactor    = 6
	interpretedCodeFactor = 36
	decodedFactor         = 3
	moduleFixedBytes      = 32 << 10
)

// compiledCost estimates the memory of a compiled module of size bytes with
// profile p.
func (r *Runtime) compiledCost(p Profile, size int) int64 {
	f := compiledCodeFactor
	if r.cfg.Engine == EngineInterpreter {
		f = interpretedCodeFactor
	}
	return int64(f)*int64(p.CodeBytes) + decodedFactor*int64(size) + moduleFixedBytes
}

// hasRoom reports whether a module of cost fits in the in-memory cache
// without evicting another (a Prepare keeps what it compiled then).
func (r *Runtime) hasRoom(cost int64) bool {
	s := r.modules.Stats()
	return s.Entries < r.cfg.MaxModules && s.Cost+cost <= r.cfg.MaxCompiledBytes
}

// writeMarker records that a digest's compiled code is in the disk cache.
func (r *Runtime) writeMarker(marker string) {
	if marker == "" {
		return
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		r.cfg.Logger.Warn("runtime: cannot write compile marker", "err", err)
	}
}

// Loaded reports whether digest is compiled and in memory.
func (r *Runtime) Loaded(digest string) bool {
	_, ok := r.modules.Peek(digest)
	return ok
}

// Info returns what Load found about a loaded digest.
func (r *Runtime) Info(digest string) (Info, bool) {
	m, ok := r.modules.Peek(digest)
	if !ok {
		return Info{}, false
	}
	return m.info, true
}

// Evict drops a digest from memory (its disk cache entry stays) and stops
// a compilation of it that is under way. In-flight invocations of it finish
// normally.
func (r *Runtime) Evict(digest string) bool {
	r.mu.Lock()
	for _, flights := range []map[string]*loadCall{r.loading, r.preparing} {
		if lc, ok := flights[digest]; ok {
			lc.cancel()
			delete(flights, digest)
		}
	}
	r.mu.Unlock()
	return r.modules.Remove(digest)
}

// Invoke runs the loaded module with the given digest once, in a fresh
// instance, under the request's limits.
//
// # Errors
//
// ErrNotLoaded when the digest is not in memory (Load it and call again);
// ErrInputTooLarge, ErrInvalidInput; ErrOverloaded when the function's
// queue is full (nothing ran); ErrTimeout, ErrCanceled (also while queued:
// Result.Queue says how long); ErrClosed; ErrMemoryLimit;
// ErrTrap; ErrGuestError (FunLess __insert_error, or a non-zero __invoke);
// ErrExit (WASI exit code and stderr); ErrOutputNotJSON, ErrOutputTooLarge.
// All are *Error.
func (r *Runtime) Invoke(ctx context.Context, digest string, req Request) (Result, error) {
	if !r.begin() {
		return Result{}, ErrClosed
	}
	defer r.active.Done()
	m, ok := r.modules.Get(digest)
	if !ok || !m.acquire() {
		return Result{}, newError(KindNotLoaded, "%s", digest)
	}
	defer m.release()
	m.lastUse.Store(time.Now().UnixNano())
	r.stats.invocations.Add(1)
	res := Result{ABI: m.info.ABI}

	limits := req.Limits.merge(r.cfg.Limits)
	input := req.Input
	if len(input) == 0 {
		input = []byte("{}")
	}
	if len(input) > limits.InputBytes {
		return res, newError(KindInputTooLarge, "input of %d bytes exceeds the limit of %d bytes", len(input), limits.InputBytes)
	}
	if !json.Valid(input) {
		return res, newError(KindInvalidInput, "input is not valid JSON")
	}
	if err := checkEnv(req.Env); err != nil {
		return res, newError(KindInvalidInput, "%v", err)
	}
	limits.MemoryBytes -= limits.MemoryBytes % pageSize
	if m.info.MemoryMinBytes+m.info.TableBytes > limits.MemoryBytes {
		return res, newError(KindMemoryLimit, "module needs %d bytes at start (linear memory %d, tables %d), over the cap of %d bytes",
			m.info.MemoryMinBytes+m.info.TableBytes, m.info.MemoryMinBytes, m.info.TableBytes, limits.MemoryBytes)
	}

	ctx, cancel := context.WithTimeout(ctx, limits.Timeout)
	defer cancel()
	share := req.Share
	if share.Function == "" {
		share.Function = digest
	}
	held, queue, denied := r.slots.acquire(ctx, share)
	res.Queue = queue
	if denied != nil {
		return res, r.slotError(denied, queue)
	}
	defer r.slots.release(held)
	defer r.cfg.Track(ctx, digest, WorkRun)()
	c := &call{input: input, limits: limits, linearCap: m.linearCap(limits.MemoryBytes), allowed: req.AllowedHosts, env: req.Env, client: r.client}
	c.log.maxLines, c.log.maxBytes = limits.LogLines, limits.LogBytes
	c.streams = [2]protocol.LogStream{protocol.StreamConsole, protocol.StreamConsole}
	if m.info.ABI != ABIFunLess {
		c.streams[1] = protocol.StreamStderr // and stdout is the output
	}
	c.stdout.max = limits.OutputBytes
	c.deadline, _ = ctx.Deadline()
	ctx = context.WithValue(ctx, callKey{}, c)

	var err error
	if m.info.ABI == ABIFunLess {
		err = m.invokeFunLess(ctx, c, &res)
	} else {
		err = m.runCommand(ctx, c, &res)
	}
	c.log.finish(c.streams)
	res.Logs, res.LogsDropped, res.LogBytesDropped = c.log.lines, c.log.droppedLines, c.log.droppedBytes
	return res, err
}

// slotError explains why a call got no instance slot.
func (r *Runtime) slotError(d *slotDenied, waited time.Duration) *Error {
	switch {
	case d.closed:
		return newError(KindClosed, "the runtime closed while the invocation was queued")
	case d.full:
		return newError(KindOverloaded, "the function already has %d calls waiting on this agent, its limit", d.bound)
	}
	why := fmt.Sprintf("all %d instance slots busy", r.cfg.MaxConcurrent)
	if d.why == waitFunction {
		why = fmt.Sprintf("the function has %d instances running, its limit", d.bound)
	}
	if errors.Is(d.ctxErr, context.DeadlineExceeded) {
		return newError(KindTimeout, "waited %v for an instance slot (%s)", waited.Round(time.Millisecond), why)
	}
	return newError(KindCanceled, "the caller canceled the invocation while it was queued (%s)", why)
}

// begin registers an invocation or background job; false once closed.
func (r *Runtime) begin() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return false
	}
	r.active.Add(1)
	return true
}

// Close stops the runtime. New invocations fail with ErrClosed; those in
// flight may finish until ctx is done, after which they are stopped. Loaded
// modules and spare instances are then released.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for _, lc := range r.loading {
		lc.cancel()
	}
	for _, lc := range r.preparing {
		lc.cancel()
	}
	if r.sweeper != nil {
		r.sweeper.Stop()
		close(r.stopSweep)
	}
	r.mu.Unlock()
	r.slots.close()
	drained := make(chan struct{})
	go func() { r.active.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		r.cfg.Logger.Warn("runtime: closing with invocations still running", "err", ctx.Err())
	}
	r.modules.Purge()
	err := r.rt.Close(ctx)
	r.memory.drain()
	if r.ccache != nil {
		err = errors.Join(err, r.ccache.Close(ctx))
	}
	return err
}

// moduleConfig is the per-instance configuration: no args, the
// invocation's env (none for a spare instance), no preopened directories,
// real clocks, crypto randomness, and stdio and sleep routed to the
// invocation through s. What does not depend on the instance is built once
// (baseConfig): every With clones the configuration.
func (r *Runtime) moduleConfig(s *slot, command bool, env []string) wazero.ModuleConfig {
	cfg := withEnv(r.baseConfig, env).
		WithNanosleep(s.sleep).
		WithStderr(slotWriter{s: s, fd: 2})
	if command {
		return cfg.WithStdout(slotWriter{s: s, fd: 1, stdout: true})
	}
	return cfg.WithStdout(slotWriter{s: s, fd: 1})
}

// newBaseConfig returns the part of moduleConfig shared by every instance.
// No start function runs on instantiation: the runtime calls _initialize
// (FunLess ABI) or _start (WASI command) itself, once the stop is armed
// (stopper).
func newBaseConfig() wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithName("").
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStartFunctions()
}

// classify turns what wazero returned into a runtime error.
func classify(ctx context.Context, err error, c *call, alloc *capAllocator) *Error {
	if c.trap != nil {
		return c.trap
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return &Error{Kind: KindTimeout, Msg: fmt.Sprintf("stopped after %v", c.limits.Timeout), Err: err}
		case sys.ExitCodeContextCanceled:
			return &Error{Kind: KindCanceled, Msg: "the caller canceled the invocation", Err: err}
		}
		return &Error{Kind: KindExit, Msg: exitMsg(exit.ExitCode(), c), ExitCode: exit.ExitCode(), Stderr: c.stderr(), Err: err}
	}
	// A guest stopped by its stop check (addStopCheck) traps.
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Kind: KindTimeout, Msg: fmt.Sprintf("stopped after %v", c.limits.Timeout), Err: err}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return &Error{Kind: KindCanceled, Msg: "the caller canceled the invocation", Err: err}
	}
	msg, _, _ := strings.Cut(err.Error(), "\n") // drop wazero's stack trace
	if alloc != nil && alloc.hit {
		return &Error{Kind: KindMemoryLimit, Msg: fmt.Sprintf("the function needed more than its %d MiB of linear memory (%s)", c.linearCap>>20, msg), Err: err}
	}
	return &Error{Kind: KindTrap, Msg: msg, Stderr: c.stderr(), Err: err}
}

func exitMsg(code uint32, c *call) string {
	s := strings.TrimSpace(c.stderr())
	if s == "" {
		return fmt.Sprintf("exit code %d", code)
	}
	return fmt.Sprintf("exit code %d: %s", code, s)
}

func wazeroVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/tetratelabs/wazero" {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return "unknown"
}

func withAllocator(ctx context.Context, a *capAllocator) context.Context {
	return experimental.WithMemoryAllocator(ctx, a)
}
