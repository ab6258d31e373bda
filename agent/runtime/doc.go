// Package runtime runs Wisp functions: WebAssembly modules executed with
// wazero, one fresh instance per invocation. It is used by the agent for
// every invocation and by the controller (Inspect only) to validate uploads
// with the very loader agents use.
//
// It must never import controller code, talk to the network on its own
// behalf, or give a guest anything the host did not explicitly allow.
//
// # Life of a module
//
// Load (and the controller's Inspector, on upload) first checks the raw
// bytes against ModuleLimits with Scan: function count, body size, locals,
// nesting, br_table size, tables, globals, segments, imports, exports and
// the counts of every vector, before wazero decodes anything (wazero's
// decoder trusts declared counts). It then compiles under a CompileBudget:
// in process when the module is cheap to compile by construction, else
// first in a worker process (the same binary started with WorkerArg) bounded
// in time and memory and killed when the digest is evicted. A verdict of the
// budget is remembered per digest. docs/decisions.md has the measurements
// behind the thresholds.
//
// Load compiles code once per digest ("sha256:<hex>") and keeps the compiled
// module in a bounded LRU (cache.LRU: Config.MaxModules entries and
// Config.MaxCompiledBytes of compiled module, as estimated from the code:
// compiledCost; a module no call used for Config.ModuleIdle leaves it too,
// and the memory of the modules that leave is given back to the system
// within a second). With Config.CacheDir set, wazero also writes the
// compiled machine code to disk, so an agent that restarts, or calls a
// module the LRU dropped, loads it without recompiling; Stats.DiskCacheHits
// counts those loads (the runtime keeps a marker per digest and wazero
// version next to wazero's cache to tell a disk hit from a cold compile).
// The interpreter engine (armv7, or Engine: "interpreter") has no disk
// cache. Prepare is Load for code pushed ahead of its calls: it compiles
// into the disk cache, and keeps the module in memory only if there is room
// for it without evicting another, so memory holds the functions that are
// called rather than every function pushed (without a disk cache it only
// checks the code, and the first call compiles).
//
// Invoke runs a loaded digest. Evicting a module while it runs is safe: it is
// closed when its last invocation ends.
//
// # ABIs
//
// The ABI is detected from the exports:
//
//   - __invoke(i32) -> i32 exported: FunLess ABI v1. The host provides
//     fl_imps.{__get_input_data, __insert_response, __insert_error,
//     __console_log, __http_request}. If the module exports _initialize
//     (a WASI reactor: clang -mexec-model=reactor, Go -buildmode=c-shared)
//     it is called once per instance before __invoke; _start is never run,
//     as in FunLess's own worker.
//   - otherwise _start exported: a WASI command. The JSON input is its stdin,
//     its stdout must be one JSON document, a non-zero exit is KindExit with
//     the exit code and stderr.
//   - neither: KindMissingExport.
//
// Every guest gets WASI preview1 with no arguments, the invocation's
// environment (Request.Env: its function's config env and secrets; none
// when empty, as FunLess gives), no preopened directories (so no
// filesystem) and no sockets; real clocks and crypto/rand randomness. A
// call with an environment never takes a spare instance (spares are built
// without one and shared by every function of a digest), so no variable
// leaks from one function to another. Importing anything else is KindUnknownImport at
// load time, naming the import.
//
// # __http_request
//
// The guest's response buffer size is unknown in FunLess's ABI. Wisp reads
// the u32 at resp_len_ptr as the buffer's capacity before the call (0 means
// "not said", as FunLess's own guests do); it never writes past that
// capacity, past the end of linear memory, or past Limits.HTTPResponseBytes,
// and a longer body is truncated with a log line. Lengths are bytes. Only
// hosts on the invocation's allowlist (Request.AllowedHosts: "*", a host
// or IP on any port, host:port, or "*.example.com" for any name under
// example.com but not example.com itself) are reached, redirects included; anything else is
// status 0 (FunLess's transport failure) with a log line saying why. Any
// pointer outside linear memory traps that invocation, never the host.
//
// # Logs
//
// Result.Logs are protocol.LogLine values, each with the time the host
// captured it and its stream: __console_log and the stdout/stderr of a
// FunLess-ABI guest are StreamConsole, the stderr of a WASI command is
// StreamStderr (its stdout is its output), and the host's own lines (why an
// __http_request failed, the truncation marker) are StreamPlatform. Stdio is
// split into lines as it is written (empty lines are skipped; a last line
// without its newline ends with the invocation). Limits.LogLines and
// Limits.LogBytes bound them: every byte a guest makes the host keep counts,
// including an unfinished stdio line; a line that does not fit is cut at a
// UTF-8 boundary or dropped, and one last StreamPlatform line
// (TruncatedMarker) says how many lines and bytes were dropped.
//
// # Limits
//
// Per invocation (Config.Limits, overridable per Request): a deadline after
// which the guest is really stopped (the compiler engine's modules carry a
// stop check at their loop headers and function entries, stop.go; the
// interpreter closes the module when its context is done, checked by wazero
// at loop headers and by deadlineListener at function entries), a memory cap (Limits.MemoryBytes) that covers linear
// memory and tables, input, output and log bounds. Tables are host memory
// outside linear memory: a module's tables count at their minimum, or at
// twice their maximum when it uses table.grow (which then requires every
// table to declare a maximum, ModuleLimits.TableEntries at most), and linear
// memory may take the cap less that; the allocator enforces it (memory.grow
// fails in the guest; a guest that then traps gets KindMemoryLimit). A
// module whose tables alone exceed the runtime's cap is refused at Load
// (KindModuleLimit).
//
// Instance slots are shared fairly. Config.MaxConcurrent (default
// 8 × GOMAXPROCS) bounds how many instances exist at once, which bounds host
// memory. Each call carries a ShareKey (owner, function; the agent's
// executor sets "module/function" and, until functions have owners, an
// empty owner):
//
//   - Config.MaxPerFunction (default max(1, GOMAXPROCS-1)) bounds the
//     instances of one function. A guest running flat out costs a whole
//     core: a looping or recursing guest returns to Go every 1,024 loop
//     iterations or function calls (stop.go), so the Go scheduler time-slices guests, but only across
//     GOMAXPROCS cores. With the default one function, even looping, leaves a core
//     to the others.
//   - A call that cannot have a slot now waits in its function's FIFO
//     queue, within its deadline (KindTimeout, or KindCanceled, naming the
//     wait; Result.Queue says how long). When a slot frees it goes to the
//     next owner in turn, then to that owner's next function in turn, then
//     to that function's oldest call: round-robin by calls, not by time
//     (the per-function cap is what bounds a slow function's time). A
//     function that starts waiting is served after at most one call of
//     each other waiting function, however many calls those have queued.
//   - Config.MaxQueuedPerFunction (default 256) bounds a function's queue:
//     one more call is refused at once with KindOverloaded, before anything
//     runs, so its sender may try another agent. A queued call costs a
//     goroutine and its input, which the agent holds anyway; its deadline
//     bounds its wait.
//
// Spare instances are not slots (at most 16 exist, see Speed). Close
// refuses the calls still queued with KindClosed.
//
// # Speed
//
// Instantiating a small C function takes tens of microseconds, so every
// invocation gets a fresh instance, which keeps calls apart by construction:
// globals, tables, memory size, environment and WASI state are a new
// instance's. Linear memory comes from a per-runtime pool of regions
// (memory.go), reset when an instance closes at a cost that follows the
// pages the guest touched, not the size of its memory: on Linux a region is
// an anonymous mapping without huge pages, and only the pages its page
// table holds (/proc/self/pagemap) are cleared, so a Rust guest's 1 MiB
// stack costs the few pages it reached; elsewhere the bytes the guest was
// given are cleared. Pooling removed garbage collection as the main cost of
// a warm call; the page-level reset removed the clearing of memory no guest
// touched (docs/decisions.md, issue 16).
//
// The module compiled and instantiated is the uploaded one with its data
// segments packed (packData): wazero's cost of applying data grows with the
// number of segments, and a Go guest has tens of thousands of small ones
// (hello_go: 36,556, packed into 3; its instantiation went from 1.2 ms to
// 0.18 ms). Packing leaves memory byte for byte as it was and is done only
// where the guest cannot tell.
//
// wazero's own way of stopping a guest at its deadline (an exit to Go at
// every loop header) made a Go guest, which enters a loop in every Go
// function, several times slower; the runtime adds a cheaper check of its
// own to each module instead (stop.go).
//
// Go guests (wasip1) still take most of a millisecond to start, because the
// Go runtime initialises in _initialize (and not from a post-initialisation
// image, which would give every call the same random seeds:
// docs/decisions.md, issue 16). Wisp hides this with spare instances: when a
// module's fastest instantiation so far exceeds Config.SpareThreshold
// (500µs), up to Config.SpareInstances (2) instances are instantiated and
// initialised in the background, and an invocation takes one if ready. A
// spare has never run __invoke, so "a fresh instance per call" still holds
// and no state leaks between calls; reusing one instance for many calls
// (for reactors that declare themselves reusable) was rejected for that
// reason. Spares cost their guest's memory (a Go guest starts near 3 MiB),
// so at most 16 exist per runtime, only with the default memory cap, and they
// go when their module is evicted. On a saturated agent spares do not add
// capacity: they move the instantiation off the caller's critical path.
//
// # Errors
//
// Every failure is an *Error with a Kind; match with errors.Is against the
// Err* sentinels or read details (exit code, stderr) with errors.As.
// Invoke returns the Result (logs, timings) even when it fails.
package runtime
