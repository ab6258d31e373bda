package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"golang.org/x/sync/semaphore"

	"github.com/wispfn/wisp/cache"
)

// CompileBudget bounds compilation. A module whose profile (see Scan) makes
// it cheap to compile by construction is compiled in the calling process;
// any other is compiled first in a worker process (Worker) that runs under
// Timeout (of CPU time) and MemoryBytes and is killed when either is
// exceeded, when the caller cancels, or when its digest is evicted. The compiled code then
// reaches this process through the on-disk compilation cache (compiler
// engine with Config.CacheDir), or this process compiles it again, now
// known to fit the budget (interpreter, or no cache dir).
//
// A module that exceeds the budget fails with KindCompileBudget, and the
// runtime remembers the verdict for its digest: it is not compiled again.
// The verdict depends on the module, not on how busy the machine is: the
// time budget counts the worker's CPU time, and a worker that the machine
// starves (it runs at a lower priority) until Wall has passed is stopped
// with KindOverloaded, which nothing remembers.
type CompileBudget struct {
	// Timeout bounds the CPU time of one compilation in a worker, summed
	// over its threads (on Linux its RLIMIT_CPU, in whole seconds, rounded
	// up; elsewhere the wall time). Default 60s.
	Timeout time.Duration
	// Wall bounds a worker's wall time where Timeout counts CPU time: a
	// worker still running then is starved, and stopped as overloaded.
	// Default wallFactor × Timeout.
	Wall time.Duration
	// MemoryBytes bounds a worker's memory (on Linux its RLIMIT_DATA, the
	// heap and every private writable mapping). Default 1 GiB.
	MemoryBytes uint64
	// Concurrent bounds workers running at once; further compilations
	// wait for one, within their caller's context. Default GOMAXPROCS/2,
	// at least 1, so compiling never takes every core.
	Concurrent int
	// Worker is the command that runs a compile worker: a program that
	// calls ServeCompileWorker when started with these arguments (the
	// Wisp binaries do, with WorkerArg). Empty: every module is compiled
	// in the calling process, bounded only by ModuleLimits (for libraries
	// and tests that cannot spawn a worker).
	Worker []string
}

// WorkerArg is the first argument that makes a Wisp binary a compile
// worker (see RunCompileWorkerIfAsked).
const WorkerArg = "__wisp_compile_worker"

// Thresholds under which a module is cheap to compile by construction and
// compiled in process. For wazero's optimising compiler they bound what
// makes it superlinear: locals times blocks (SSA), br_table targets (a
// block edge each) and the sheer amount of code. The interpreter is linear
// in the code (about 50 bytes of heap per byte of code at worst), so only
// the amount of code counts. docs/decisions.md has the worst cases
// measured at these bounds.
const (
	cheapCodeBytes = 128 << 10
	cheapLocals    = 1_000
	cheapBrTargets = 8_192
	cheapNesting   = 512

	cheapInterpretedCodeBytes = 3 << 20
)

// cheap reports whether p may be compiled in process by engine.
func cheap(p Profile, engine string) bool {
	if engine == EngineInterpreter {
		return p.CodeBytes <= cheapInterpretedCodeBytes
	}
	return p.CodeBytes <= cheapCodeBytes && p.MaxLocals <= cheapLocals &&
		p.BrTableTargets <= cheapBrTargets && p.MaxNesting <= cheapNesting
}

// localCodeBytes bounds the code being compiled in this process at once:
// what bounds the memory those compilations take.
func localCodeBytes(engine string) int64 {
	if engine == EngineInterpreter {
		return cheapInterpretedCodeBytes
	}
	return int64(goruntime.GOMAXPROCS(0)) * cheapCodeBytes
}

func (b CompileBudget) withDefaults() CompileBudget {
	if b.Timeout <= 0 {
		b.Timeout = 60 * time.Second
	}
	if b.Wall <= 0 {
		b.Wall = wallFactor * b.Timeout
	}
	if b.MemoryBytes == 0 {
		b.MemoryBytes = 1 << 30
	}
	if b.Concurrent <= 0 {
		b.Concurrent = max(1, goruntime.GOMAXPROCS(0)/2)
	}
	return b
}

// compiler holds what Inspect and Load share: the limits, the budget, the
// worker slots and the digests that failed their budget.
type compiler struct {
	limits  ModuleLimits
	budget  CompileBudget
	engine  string
	workers chan struct{}
	// local bounds the code compiling in this process at once, weighted
	// by code bytes (localCodeBytes).
	local     *semaphore.Weighted
	localSize int64
	// failed remembers digests whose compilation exceeded the budget or
	// crashed a worker: retrying would only cost the same again.
	failed *cache.LRU[string, *Error]
}

// maxFailed bounds the remembered failures.
const maxFailed = 4096

func newCompiler(limits ModuleLimits, budget CompileBudget, engine string) *compiler {
	budget = budget.withDefaults()
	return &compiler{
		limits:    limits.withDefaults(),
		budget:    budget,
		engine:    engine,
		workers:   make(chan struct{}, budget.Concurrent),
		local:     semaphore.NewWeighted(localCodeBytes(engine)),
		localSize: localCodeBytes(engine),
		failed:    cache.NewLRU[string, *Error](cache.Limits{Entries: maxFailed}, nil),
	}
}

// check looks code up in the remembered failures, then scans it against
// the limits.
func (c *compiler) check(digest string, code []byte) (Profile, error) {
	if e, ok := c.failed.Get(digest); ok {
		return Profile{}, e
	}
	return Scan(code, c.limits)
}

// isolated tells whether code must be compiled in a worker first.
func (c *compiler) isolated(p Profile) bool {
	return len(c.budget.Worker) > 0 && !cheap(p, c.engine)
}

// workerRequest is the first line a worker reads; the code follows.
type workerRequest struct {
	Engine      string `json:"engine"`
	CPUSeconds  uint64 `json:"cpu_seconds,omitempty"`
	CacheDir    string `json:"cache_dir,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes"`
	CodeBytes   int    `json:"code_bytes"`
}

// workerReply is the one line a worker writes.
type workerReply struct {
	Info  *Info  `json:"info,omitempty"`
	Kind  Kind   `json:"kind,omitempty"`
	Msg   string `json:"msg,omitempty"`
	Error string `json:"error,omitempty"`
}

// inWorker compiles code in a worker process under the budget. With
// cacheDir set (compiler engine) the worker leaves the compiled code in the
// on-disk cache. It returns what the worker found, a *Error of
// KindCompileBudget, KindCanceled or the module's own verdict, or an error
// when no worker could run.
func (c *compiler) inWorker(ctx context.Context, digest string, code []byte, cacheDir string) (Info, error) {
	select {
	case c.workers <- struct{}{}:
	case <-ctx.Done():
		return Info{}, canceled(ctx, "waiting for a compile worker")
	}
	defer func() { <-c.workers }()

	cpuSeconds := uint64((c.budget.Timeout + time.Second - 1) / time.Second)
	wall := c.budget.Timeout
	if cpuLimited {
		wall = c.budget.Wall
	}
	wctx, cancel := context.WithTimeout(ctx, wall)
	defer cancel()
	cmd := exec.CommandContext(wctx, c.budget.Worker[0], c.budget.Worker[1:]...)
	cmd.Env = []string{} // nothing of this process's environment
	setWorkerAttrs(cmd)
	req, _ := json.Marshal(workerRequest{Engine: c.engine, CacheDir: cacheDir, MemoryBytes: c.budget.MemoryBytes, CPUSeconds: cpuSeconds, CodeBytes: len(code)})
	cmd.Stdin = io.MultiReader(bytes.NewReader(append(req, '\n')), bytes.NewReader(code))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limitedBuffer{b: &stdout, n: 1 << 20}, &limitedBuffer{b: &stderr, n: 64 << 10}
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var cpu time.Duration
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	switch {
	case ctx.Err() != nil:
		return Info{}, canceled(ctx, "compiling")
	case errors.Is(wctx.Err(), context.DeadlineExceeded) && !cpuLimited:
		return Info{}, c.remember(digest, newError(KindCompileBudget, "compiling took longer than the budget of %v", c.budget.Timeout))
	case errors.Is(wctx.Err(), context.DeadlineExceeded):
		return Info{}, newError(KindOverloaded, "the machine is too busy to compile: the compile worker had %v of CPU in %v; try again later",
			cpu.Round(time.Millisecond), took.Round(time.Second))
	case err != nil && cpuLimited && cpu >= time.Duration(cpuSeconds)*time.Second:
		return Info{}, c.remember(digest, newError(KindCompileBudget, "compiling took longer than the budget of %v of CPU time", c.budget.Timeout))
	case err != nil:
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return Info{}, fmt.Errorf("runtime: starting a compile worker: %w", err)
		}
		if strings.Contains(stderr.String(), "out of memory") || strings.Contains(stderr.String(), "cannot allocate memory") {
			return Info{}, c.remember(digest, newError(KindCompileBudget, "compiling needed more than the budget of %d MiB of memory", c.budget.MemoryBytes>>20))
		}
		// A Go runtime that runs out of room in the middle of a collection
		// can also die of a fault rather than say so: a worker that died
		// without answering is over its budget either way.
		return Info{}, c.remember(digest, newError(KindCompileBudget, "the compile worker died after %v (%v: %s); compiling most likely needed more than the budget of %d MiB of memory",
			took.Round(time.Millisecond), exit, firstLine(stderr.String()), c.budget.MemoryBytes>>20))
	}
	var rep workerReply
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &rep); err != nil {
		return Info{}, fmt.Errorf("runtime: unreadable compile worker reply %q: %w", preview(stdout.Bytes()), err)
	}
	switch {
	case rep.Error != "":
		return Info{}, fmt.Errorf("runtime: compile worker: %s", rep.Error)
	case rep.Kind != KindUnknown:
		return Info{}, &Error{Kind: rep.Kind, Msg: rep.Msg}
	case rep.Info == nil:
		return Info{}, errors.New("runtime: the compile worker answered nothing")
	}
	return *rep.Info, nil
}

// inProcess admits a compilation of p in this process, weighted by its
// code (a module over the whole bound waits to compile alone); the caller
// calls release when done.
func (c *compiler) inProcess(ctx context.Context, p Profile) (release func(), err error) {
	w := min(max(int64(p.CodeBytes), 1), c.localSize)
	if err := c.local.Acquire(ctx, w); err != nil {
		return nil, canceled(ctx, "waiting to compile")
	}
	return func() { c.local.Release(w) }, nil
}

// wallFactor × the time budget is the default CompileBudget.Wall.
const wallFactor = 10

func (c *compiler) remember(digest string, e *Error) *Error {
	c.failed.Add(digest, e, 1)
	return e
}

func canceled(ctx context.Context, doing string) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return newError(KindTimeout, "the deadline passed while %s", doing)
	}
	return newError(KindCanceled, "canceled while %s", doing)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// limitedBuffer keeps the first n bytes written to it and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runtimeConfig is the wazero configuration of every runtime that compiles
// for an engine, worker or not: the compiled code of one must be what the
// other loads from the cache.
func runtimeConfig(engine string, cc wazero.CompilationCache) wazero.RuntimeConfig {
	var rc wazero.RuntimeConfig
	if engine == EngineInterpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	} else {
		rc = wazero.NewRuntimeConfigCompiler()
	}
	// DWARF stays off: parsing a module's debug sections is work (and an
	// attack surface) that only improves stack traces Wisp does not show.
	// The compiler engine's modules carry their own stop check
	// (addStopCheck): wazero's costs an exit to Go at every loop header.
	rc = rc.WithCloseOnContextDone(engine == EngineInterpreter).WithDebugInfoEnabled(false)
	if cc != nil {
		rc = rc.WithCompilationCache(cc)
	}
	return rc
}

// prepareCode returns the module the runtime compiles and instantiates for
// code, which has passed Scan: its data segments packed (packData) and, on
// the compiler engine, the stop check added (addStopCheck). The compile
// worker and the process call it alike, so both compile the same bytes and
// the disk cache holds what the runtime loads.
func prepareCode(code []byte, engine string) ([]byte, error) {
	code = packData(code)
	if engine == EngineInterpreter {
		return code, nil
	}
	return addStopCheck(code)
}

// preparedFormat names what prepareCode makes. The disk cache holds the
// prepared module's compiled code, so the markers of digests compiled into
// it (Runtime.markers) are kept per format: a digest marked for another
// format is not in the cache under this one's key.
const preparedFormat = "packed-stop-2"
