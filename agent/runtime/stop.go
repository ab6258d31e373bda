package runtime

import (
	"context"
	"encoding/binary"
	"math"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Stopping a guest at its deadline (compiler engine).
//
// wazero stops a running guest when its context is done only with
// RuntimeConfig.WithCloseOnContextDone, which compiles an exit from the
// guest's machine code to Go and back at every loop header. A Go guest
// (wasip1) wraps every Go function in a loop (its goroutine resumption
// points), so it pays that on every Go call: plain wazero, hello_go,
// _initialize 1.43 ms with the check and 0.86 ms without, __invoke 406 µs
// against 141 µs (docs/decisions.md, issue 16). Instead, the runtime adds to
// each module it compiles two mutable i32 globals of its own, $tick and
// $stop (exported as stopExport), and at the entry of every function and
// the head of every loop:
//
//	$tick -= 1
//	if $tick == 0 {
//		$tick = stopTick
//		if $stop { unreachable }
//		memory.grow 0 (dropped)
//	}
//
// An invocation arms the stop with context.AfterFunc: when its context is
// done, $stop is set and the guest traps within stopTick loop iterations
// (classify then reports KindTimeout or KindCanceled from the context).
// memory.grow is the point of the second branch: wazero runs it in Go, so a
// looping guest reaches Go code every stopTick iterations, where the Go
// scheduler can preempt it. Without that a guest spinning in machine code
// cannot be stopped for a garbage collection, and the whole process waits
// for it (a check on $stop alone was tried and hung the tests). Growing by 0
// pages changes nothing. The check at function entry is for code that
// never loops but recurses: six calls per level, 64 levels deep, run for
// ever without one loop (testdata recurse.wat; wazero's own check, at loop
// headers only, let it run for ever too).
//
// # Notes
//
//   - The guest cannot reach the globals: addStopCheck refuses a module in
//     which any instruction names a global index at or past them (such a
//     module is invalid as uploaded; with the globals added it would become
//     valid and could clear its own stop).
//   - A module without memory gets one of 0 pages, unexported (memory.grow
//     needs one; the guest cannot name it: without a memory no memory
//     instruction validates). A module importing its memory is left alone:
//     the runtime refuses it (no memory is provided), so it never runs.
//   - A start section would run inside instantiation, before the stop can
//     be armed: it is removed, and its function exported as startExport and
//     called by the runtime right after instantiation, with the stop armed
//     (the order of events is the same: segments applied, then start).
//   - $stop is written by the goroutine of AfterFunc while guest code reads
//     it: an aligned word store, which the guest sees at its next load. The
//     interpreter engine (which reads globals from Go memory) keeps wazero's
//     WithCloseOnContextDone instead.
//   - A module that exports stopExport or startExport itself is refused.
//   - The instrumented module grows by at most 32 bytes per loop and per
//     function plus a few entries; Scan's limits apply to the module as
//     uploaded.
const (
	stopExport  = "wisp:stop"
	startExport = "wisp:start"
	// stopTick is how many loop iterations pass between two looks at
	// $stop: microseconds at most.
	stopTick = 1024
)

// addStopCheck returns code instrumented with the stop global and its loop
// checks (see above). code has passed Scan.
func addStopCheck(code []byte) ([]byte, error) {
	secs, ok := sections(code)
	if !ok {
		return nil, newError(KindInvalidModule, "the module's sections are not framed as they should be")
	}
	var (
		imported, defined int
		hasStart          bool
		start             uint64
		memories          int
		memoryImported    bool
	)
	for _, sec := range secs {
		r := &reader{b: code[sec.body:sec.end], off: sec.body}
		var err error
		switch sec.id {
		case secImport:
			imported, memoryImported, err = importedGlobals(r)
		case secMemory:
			var n uint64
			n, err = r.u32()
			memories = int(n)
		case secGlobal:
			var n uint64
			n, err = r.u32()
			defined = int(n)
		case secExport:
			err = checkExportNames(r)
		case secStart:
			hasStart = true
			start, err = r.u32()
		}
		if err != nil {
			return nil, asInvalid(sec.id, r, err)
		}
	}
	if memoryImported {
		return code, nil // refused by describe: it never runs
	}
	tick := uint64(imported + defined)
	stop := tick + 1
	s := &scanner{lim: unlimitedModuleLimits}
	var loops []int
	s.onLoop = func(pos int) { loops = append(loops, pos) }
	s.onGlobal = func(idx uint64) error {
		if idx >= tick {
			return newError(KindInvalidModule, "global index %d is out of range (the module has %d globals)", idx, tick)
		}
		return nil
	}
	for _, sec := range secs {
		switch sec.id {
		case secFunction:
			// The scanner numbers bodies after the declared functions.
			r := &reader{b: code[sec.body:sec.end]}
			if n, err := r.u32(); err == nil {
				s.p.Functions += int(n)
			}
		case secGlobal, secElement, secCode, secData:
			if err := s.section(sec.id, &reader{b: code[sec.body:sec.end], off: sec.body}); err != nil {
				return nil, err
			}
		}
	}

	t := binary.AppendUvarint(nil, tick)
	var check []byte
	check = append(append(append(check, 0x23), t...), 0x41, 0x01, 0x6b, 0x24) // $tick -= 1
	check = append(append(check, t...), 0x23)
	check = append(append(check, t...), 0x45, 0x04, 0x40) // if $tick == 0
	check = appendSleb32(append(check, 0x41), stopTick)
	check = append(append(check, 0x24), t...) // $tick = stopTick
	check = binary.AppendUvarint(append(check, 0x23), stop)
	check = append(check, 0x04, 0x40, 0x00, 0x0b)                             // if $stop { unreachable }
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1a, 0x0b)                 // memory.grow 0, drop; end
	globals := append(appendSleb32([]byte{0x7f, 0x01, 0x41}, stopTick), 0x0b) // $tick: i32, mutable
	globals = append(globals, 0x7f, 0x01, 0x41, 0x00, 0x0b)                   // $stop
	exports := appendExport(nil, stopExport, 0x03, stop)
	nExports := 1
	if hasStart {
		exports = appendExport(exports, startExport, 0x00, start)
		nExports++
	}

	out := append(make([]byte, 0, len(code)+len(loops)*len(check)+64), code[:8]...)
	memoryDone, globalDone, exportDone := memories > 0, false, false
	addMissing := func(rank int) {
		if !memoryDone && rank > sectionRank[secMemory] {
			out = appendSection(out, secMemory, []byte{1, 0, 0}) // one memory, 0 pages
			memoryDone = true
		}
		if !globalDone && rank > sectionRank[secGlobal] {
			out = appendSection(out, secGlobal, append(binary.AppendUvarint(nil, 2), globals...))
			globalDone = true
		}
		if !exportDone && rank > sectionRank[secExport] {
			out = appendSection(out, secExport, append(binary.AppendUvarint(nil, uint64(nExports)), exports...))
			exportDone = true
		}
	}
	for _, sec := range secs {
		if sec.id != secCustom {
			addMissing(sectionRank[sec.id])
		}
		switch sec.id {
		case secMemory:
			if memories == 0 { // declared empty
				out = appendSection(out, secMemory, []byte{1, 0, 0})
			} else {
				out = append(out, code[sec.start:sec.end]...)
			}
			memoryDone = true
		case secGlobal:
			out = appendSection(out, secGlobal, appendEntries(code[sec.body:sec.end], 2, globals))
			globalDone = true
		case secExport:
			out = appendSection(out, secExport, appendEntries(code[sec.body:sec.end], nExports, exports))
			exportDone = true
		case secStart:
			// removed: the runtime calls startExport (see above)
		case secCode:
			out = appendSection(out, secCode, checkedBodies(code, sec, loops, check))
		default:
			out = append(out, code[sec.start:sec.end]...)
		}
	}
	addMissing(math.MaxInt)
	return out, nil
}

// unlimitedModuleLimits lets the scanner walk a module Scan has already
// checked against the runtime's limits.
var unlimitedModuleLimits = ModuleLimits{
	Bytes: math.MaxInt, Functions: math.MaxInt, BodyBytes: math.MaxInt, Locals: math.MaxInt,
	Nesting: math.MaxInt, BrTable: math.MaxInt, Types: math.MaxInt, TypeArity: math.MaxInt,
	Imports: math.MaxInt, Exports: math.MaxInt, Globals: math.MaxInt, Tables: math.MaxInt,
	TableEntries: math.MaxInt, DataSegments: math.MaxInt, ElementSegments: math.MaxInt,
	ElementEntries: math.MaxInt, NameEntries: math.MaxInt,
}

func asInvalid(id byte, r *reader, err error) error {
	if _, ok := err.(*Error); ok {
		return err
	}
	return newError(KindInvalidModule, "%s section, offset %d: %v", sectionNames[id], r.off+r.i, err)
}

// importedGlobals counts the global imports of an import section, and
// reports whether it imports a memory.
func importedGlobals(r *reader) (globals int, memory bool, err error) {
	n, err := r.count(4)
	if err != nil {
		return 0, false, err
	}
	s := &scanner{lim: unlimitedModuleLimits}
	for range n {
		if err := r.name(); err != nil {
			return 0, false, err
		}
		if err := r.name(); err != nil {
			return 0, false, err
		}
		kind, err := r.byte()
		if err != nil {
			return 0, false, err
		}
		switch kind {
		case 0x00:
			_, err = r.u32()
		case 0x01:
			if _, err = r.byte(); err == nil {
				_, err = s.limits(r)
			}
		case 0x02:
			memory = true
			_, err = s.limits(r)
		case 0x03:
			globals++
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		default:
			return 0, false, newError(KindInvalidModule, "import kind 0x%x is not supported", kind)
		}
		if err != nil {
			return 0, false, err
		}
	}
	return globals, memory, nil
}

// checkExportNames refuses a module that exports a name the runtime adds.
func checkExportNames(r *reader) error {
	n, err := r.count(3)
	if err != nil {
		return err
	}
	for range n {
		size, err := r.u32()
		if err != nil || size > uint64(r.left()) {
			return errTruncated
		}
		name := string(r.b[r.i : r.i+int(size)])
		r.i += int(size)
		if name == stopExport || name == startExport {
			return newError(KindInvalidModule, "the module exports %q, a name Wisp reserves", name)
		}
		if _, err := r.byte(); err != nil {
			return err
		}
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func appendExport(b []byte, name string, kind byte, index uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(append(b, name...), kind)
	return binary.AppendUvarint(b, index)
}

func appendSection(b []byte, id byte, payload []byte) []byte {
	b = binary.AppendUvarint(append(b, id), uint64(len(payload)))
	return append(b, payload...)
}

// appendEntries returns a vector section's body (its count, then its
// entries) with n more entries, encoded in more, at its end.
func appendEntries(body []byte, n int, more []byte) []byte {
	r := &reader{b: body}
	count, _ := r.u32() // the section was read whole before
	b := binary.AppendUvarint(make([]byte, 0, len(body)+len(more)+5), count+uint64(n))
	b = append(b, body[r.i:]...)
	return append(b, more...)
}

// checkedBodies returns the code section's body with check inserted at
// the start of every function body's code and at every position of loops
// (module offsets, in increasing order), and each body's size written anew.
func checkedBodies(code []byte, sec section, loops []int, check []byte) []byte {
	r := &reader{b: code[sec.body:sec.end], off: sec.body}
	n, _ := r.u32()
	out := binary.AppendUvarint(make([]byte, 0, sec.end-sec.body+(len(loops)+int(n))*len(check)), n)
	var body []byte
	for range n {
		size, _ := r.u32()
		from, to := r.off+r.i, r.off+r.i+int(size)
		r.i += int(size)
		// The body's first instruction follows its local declarations:
		// the check goes there too, so that calls count like loops.
		lr := &reader{b: code[from:to]}
		decls, _ := lr.u32()
		for range decls {
			lr.u32()
			lr.byte()
		}
		body = append(append(body[:0], code[from:from+lr.i]...), check...)
		from += lr.i
		for len(loops) > 0 && loops[0] <= to {
			body = append(body, code[from:loops[0]]...)
			body = append(body, check...)
			from, loops = loops[0], loops[1:]
		}
		body = append(body, code[from:to]...)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	return out
}

// stopper is an instance's stop global, or nil when the engine stops guests
// itself (the interpreter, see above).
type stopper struct{ g api.MutableGlobal }

func newStopper(mod api.Module) stopper {
	g, _ := mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	return stopper{g: g}
}

// arm stops the guest once ctx is done, until the returned function is
// called.
func (s stopper) arm(ctx context.Context) (disarm func() bool) {
	if s.g == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { s.g.Set(1) })
}

// deadlineListener stops a guest run by the interpreter at its next
// function call once the call's context is done. wazero's own check
// (WithCloseOnContextDone) looks at the context at loop headers only, so a
// guest that recurses without looping (testdata recurse.wat) would run for
// ever. The listener panics with the context's error; wazero turns the
// panic into the call's error, and classify reports the timeout or the
// cancellation from the context. The compiler engine has the entry check
// of addStopCheck instead.
type deadlineListener struct{}

func (deadlineListener) NewFunctionListener(api.FunctionDefinition) experimental.FunctionListener {
	return deadlineListener{}
}

func (deadlineListener) Before(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	if err := ctx.Err(); err != nil {
		panic(err)
	}
}

func (deadlineListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (deadlineListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}
