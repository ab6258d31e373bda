// Package wasmtime measures Wisp's runtime against wasmtime, the engine
// FunLess's worker uses, on the same FunLess-ABI fixtures in the same run
// (issue 16). It is a module of its own, so that the main module never
// depends on wasmtime-go (cgo, and a 200 MB module with wasmtime's
// library inside); it imports Wisp's agent/runtime through a replace
// directive. Run it with `make bench-peer` (part of `make bench`, skipped
// with a message where cgo or the module is missing).
//
// wasmtime is driven the way FunLess's worker drives it: the module is
// compiled once; each call gets a fresh store with a WASI context (no
// arguments, no environment, no preopened directories), instantiates the
// module through a linker made once (WASI and the fl_imps host functions),
// calls _initialize when the module exports it, then __invoke. Wisp is
// called as the agent calls it: Runtime.Invoke of a loaded digest with the
// default Config, and again on a runtime without spare instances
// (ratio-cold-p50: every call instantiates on the caller's time, as on an
// agent with no idle CPU).
package wasmtime
