package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	goruntime "runtime"
	"time"
)

// Engine names, as reported by Runtime.Engine and accepted by Config.Engine.
const (
	EngineAuto        = "auto"
	EngineCompiler    = "compiler"
	EngineInterpreter = "interpreter"
)

// Limits bound one invocation. In a Config a zero field takes the default
// below; in a Request a zero field takes the Config's value.
type Limits struct {
	// Timeout bounds one invocation, instantiation included. Default 10s.
	// When it passes the guest is stopped (wazero closes the module on
	// context done), not abandoned.
	Timeout time.Duration
	// MemoryBytes caps the guest's linear memory. Default 128 MiB. It is
	// rounded down to whole 64 KiB pages.
	MemoryBytes uint64
	// InputBytes caps the JSON input. Default 1 MiB.
	InputBytes int
	// OutputBytes caps the JSON output (or WASI stdout). Default 1 MiB.
	OutputBytes int
	// LogLines and LogBytes cap the log lines kept per invocation
	// (__console_log, stdout and stderr of FunLess-ABI guests, stderr of
	// WASI commands, the host's own lines), and LogBytes also what waits
	// for a newline. What does not fit is dropped, and one marker line
	// (TruncatedMarker) says so. Defaults 100 and 64 KiB.
	LogLines int
	LogBytes int
	// HTTPTimeout bounds one __http_request. Default 10s.
	HTTPTimeout time.Duration
	// HTTPResponseBytes caps the body __http_request hands back. Default 1 MiB.
	HTTPResponseBytes int
}

// DefaultLimits are the limits of a zero Config.
var DefaultLimits = Limits{
	Timeout:           10 * time.Second,
	MemoryBytes:       128 << 20,
	InputBytes:        1 << 20,
	OutputBytes:       1 << 20,
	LogLines:          100,
	LogBytes:          64 << 10,
	HTTPTimeout:       10 * time.Second,
	HTTPResponseBytes: 1 << 20,
}

// merge returns l with every zero field taken from def.
func (l Limits) merge(def Limits) Limits {
	if l.Timeout <= 0 {
		l.Timeout = def.Timeout
	}
	if l.MemoryBytes == 0 {
		l.MemoryBytes = def.MemoryBytes
	}
	if l.InputBytes <= 0 {
		l.InputBytes = def.InputBytes
	}
	if l.OutputBytes <= 0 {
		l.OutputBytes = def.OutputBytes
	}
	if l.LogLines <= 0 {
		l.LogLines = def.LogLines
	}
	if l.LogBytes <= 0 {
		l.LogBytes = def.LogBytes
	}
	if l.HTTPTimeout <= 0 {
		l.HTTPTimeout = def.HTTPTimeout
	}
	if l.HTTPResponseBytes <= 0 {
		l.HTTPResponseBytes = def.HTTPResponseBytes
	}
	return l
}

// DefaultMaxQueuedPerFunction is Config.MaxQueuedPerFunction when unset.
const DefaultMaxQueuedPerFunction = 256

// Config configures a Runtime. The zero Config is valid: compiler engine where
// supported, no disk cache, default limits.
type Config struct {
	// CacheDir, when set, holds wazero's on-disk compilation cache so a
	// restarted agent does not recompile. The agent points it at its data dir.
	CacheDir string
	// Engine is "auto" (default: compiler on amd64/arm64, interpreter
	// elsewhere, e.g. armv7), "compiler" or "interpreter".
	Engine string
	// Limits are the per-invocation defaults.
	Limits Limits
	// MaxModules bounds how many compiled modules stay in memory. Default 64.
	MaxModules int
	// MaxCompiledBytes bounds the memory the compiled modules kept in
	// memory hold, as estimated from their code: machine code (or the
	// interpreter's compiled form) and wazero's decoded module, about 0.5
	// MiB for a 70 KB Rust function compiled, 2 MiB interpreted. The least
	// recently used go first; their compiled code stays in the disk cache
	// (Config.CacheDir), so loading one again is cheap. A module estimated
	// at more than the bound is kept alone. Default 8 MiB.
	MaxCompiledBytes int64
	// ModuleIdle: a compiled module that no call used for this long
	// leaves memory (as above). Default 5 minutes; negative: never.
	ModuleIdle time.Duration
	// SpareInstances is how many pre-instantiated instances are kept ready
	// for each module whose instantiation is slow (see SpareThreshold).
	// Default 2; negative disables spares.
	SpareInstances int
	// SpareThreshold is the instantiation time above which a module gets
	// spare instances. Default 500µs.
	SpareThreshold time.Duration
	// MaxConcurrent bounds how many instances exist at once; further
	// invocations wait their turn (within their deadline). It bounds host
	// memory: at most MaxConcurrent guest memories are alive. Default
	// 8 × GOMAXPROCS.
	MaxConcurrent int
	// ModuleLimits bound what a module may declare; checked before anything
	// compiles it (zero fields: DefaultModuleLimits).
	ModuleLimits ModuleLimits
	// Compile bounds compilation (zero fields: defaults; see CompileBudget).
	Compile CompileBudget
	// MaxPerFunction bounds how many instances of one function
	// (Request.Share) exist at once; its further calls wait, and slots go
	// round-robin to the functions waiting, so a flooded function cannot
	// starve the others. A guest running flat out costs a whole core (the
	// Go scheduler time-slices guests, which return to Go every 1,024 loop
	// iterations: stop.go), so the
	// default, max(1, GOMAXPROCS-1), leaves one core to every other
	// function even when one of them loops. Capped at MaxConcurrent.
	MaxPerFunction int
	// MaxQueuedPerFunction bounds how many calls of one function wait for
	// a slot; one more is refused at once with ErrOverloaded, before
	// anything runs. Default 256: a burst that size is absorbed (a queued
	// call costs little, and its deadline bounds its wait); past it the
	// agent refuses, so the sender can spread the load.
	MaxQueuedPerFunction int
	// HTTPClient makes the guests' __http_request calls. Default: a client
	// that does not follow redirects to hosts off the allowlist.
	HTTPClient *http.Client
	// Logger receives the runtime's own events. Default: discard.
	Logger *slog.Logger
	// Track, when set, is told just before the runtime compiles a module,
	// runs a guest for an invocation (its instantiation included) or
	// instantiates a spare instance, and the func it returns is called when
	// that is over. The agent records them in its crash-marker file
	// (agent/state) so that code which kills the process is known after a
	// restart. It is on every invocation's path and must be fast. ctx is
	// Load's or Invoke's (a background context for spares).
	Track func(ctx context.Context, digest string, w Work) (done func())
}

// Work is what the runtime is about to do with a module, as Config.Track
// is told.
type Work uint8

const (
	WorkCompile Work = iota + 1 // compile it (or load it from the disk cache)
	WorkRun                     // instantiate and run a guest for an invocation
	WorkSpare                   // instantiate a spare instance in the background
)

func (w Work) String() string {
	switch w {
	case WorkCompile:
		return "compiling"
	case WorkRun:
		return "running"
	case WorkSpare:
		return "instantiating"
	}
	return fmt.Sprintf("work(%d)", uint8(w))
}

func untracked(context.Context, string, Work) func() { return func() {} }

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch c.Engine {
	case "", EngineAuto, EngineCompiler, EngineInterpreter:
	default:
		return fmt.Errorf("runtime: engine %q: want auto, compiler or interpreter", c.Engine)
	}
	l := c.Limits
	if l.Timeout < 0 || l.InputBytes < 0 || l.OutputBytes < 0 || l.LogLines < 0 || l.LogBytes < 0 || l.HTTPTimeout < 0 || l.HTTPResponseBytes < 0 {
		return errors.New("runtime: limits must not be negative")
	}
	if l.MemoryBytes != 0 && l.MemoryBytes < 1<<16 {
		return fmt.Errorf("runtime: memory limit %d bytes is below one wasm page (65536)", l.MemoryBytes)
	}
	if c.MaxModules < 0 || c.MaxCompiledBytes < 0 {
		return errors.New("runtime: module cache bounds must not be negative")
	}
	if c.MaxConcurrent < 0 || c.MaxPerFunction < 0 || c.MaxQueuedPerFunction < 0 {
		return errors.New("runtime: instance slot bounds must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Engine == "" {
		c.Engine = EngineAuto
	}
	if c.Engine == EngineAuto {
		switch goruntime.GOARCH {
		case "amd64", "arm64":
			c.Engine = EngineCompiler
		default:
			c.Engine = EngineInterpreter
		}
	}
	c.Limits = c.Limits.merge(DefaultLimits)
	if c.MaxModules == 0 {
		c.MaxModules = 64
	}
	if c.MaxCompiledBytes == 0 {
		c.MaxCompiledBytes = 8 << 20
	}
	if c.ModuleIdle == 0 {
		c.ModuleIdle = 5 * time.Minute
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 8 * goruntime.GOMAXPROCS(0)
	}
	if c.MaxPerFunction == 0 {
		c.MaxPerFunction = max(1, goruntime.GOMAXPROCS(0)-1)
	}
	c.MaxPerFunction = min(c.MaxPerFunction, c.MaxConcurrent)
	if c.MaxQueuedPerFunction == 0 {
		c.MaxQueuedPerFunction = DefaultMaxQueuedPerFunction
	}
	if c.SpareInstances == 0 {
		c.SpareInstances = 2
	}
	if c.SpareThreshold <= 0 {
		c.SpareThreshold = 500 * time.Microsecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Track == nil {
		c.Track = untracked
	}
	return c
}
