// Package testwasm builds wasm modules byte by byte for tests: hostile ones
// whose shape no compiler emits (billions of locals in one declaration, a
// million nested blocks, tables that grow without bound) and that a WAT
// file could only spell out at a size of gigabytes. It is test support
// only; production code must not import it.
//
// A Module is a FunLess-ABI function: it exports memory and
// __invoke(i32) -> i32, imports nothing unless asked, and its __invoke body
// is whatever the test writes. Bytes are deterministic.
package testwasm

import "bytes"

// Value types.
const (
	I32     = 0x7f
	I64     = 0x7e
	FuncRef = 0x70
)

// Some opcodes tests use.
const (
	OpUnreachable = 0x00
	OpBlock       = 0x02
	OpLoop        = 0x03
	OpBr          = 0x0c
	OpBrIf        = 0x0d
	OpBrTable     = 0x0e
	OpEnd         = 0x0b
	OpDrop        = 0x1a
	OpLocalGet    = 0x20
	OpLocalSet    = 0x21
	OpI32Const    = 0x41
	OpI32Add      = 0x6a
	OpBlockEmpty  = 0x40
)

// Module describes a FunLess-ABI module with one defined function,
// __invoke, plus optional extras.
type Module struct {
	// MemoryPages is the linear memory's minimum (default 1).
	MemoryPages uint32
	// Locals are (count, type) groups of __invoke's locals; counts are
	// written as declared, however large.
	Locals [][2]uint32
	// Body is __invoke's instructions, without the final end.
	Body []byte
	// Tables are funcref tables: Min entries and, when HasMax, Max.
	Tables []Table
	// ExtraFunctions adds that many () -> () functions with body Extra
	// (without the final end).
	ExtraFunctions int
	Extra          []byte
	// Globals adds that many immutable i32 globals.
	Globals int
	// ImportFunctions adds that many imports of fl_imps.__console_log.
	ImportFunctions int
}

// Table is a funcref table declaration.
type Table struct {
	Min, Max uint32
	HasMax   bool
}

// ULEB appends an unsigned LEB128.
func ULEB(dst []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			dst = append(dst, c|0x80)
			continue
		}
		return append(dst, c)
	}
}

// SLEB appends a signed LEB128.
func SLEB(dst []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

// I32Const appends i32.const v.
func I32Const(dst []byte, v int32) []byte {
	return SLEB(append(dst, OpI32Const), int64(v))
}

func section(dst []byte, id byte, payload []byte) []byte {
	dst = append(dst, id)
	dst = ULEB(dst, uint64(len(payload)))
	return append(dst, payload...)
}

func vec(n int, items []byte) []byte {
	return append(ULEB(nil, uint64(n)), items...)
}

func name(dst []byte, s string) []byte {
	return append(ULEB(dst, uint64(len(s))), s...)
}

// Bytes encodes the module.
func (m Module) Bytes() []byte {
	var out bytes.Buffer
	out.Write([]byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	w := func(id byte, payload []byte) { out.Write(section(nil, id, payload)) }

	// Types: 0 = (i32) -> i32, 1 = () -> (), 2 = (i32, i32) -> ().
	w(1, vec(3, []byte{0x60, 1, I32, 1, I32, 0x60, 0, 0, 0x60, 2, I32, I32, 0}))
	if m.ImportFunctions > 0 {
		var imps []byte
		for range m.ImportFunctions {
			imps = name(imps, "fl_imps")
			imps = name(imps, "__console_log")
			imps = append(imps, 0x00, 2)
		}
		w(2, vec(m.ImportFunctions, imps))
	}
	funcs := []byte{0}
	for range m.ExtraFunctions {
		funcs = append(funcs, 1)
	}
	w(3, vec(1+m.ExtraFunctions, funcs))
	if len(m.Tables) > 0 {
		var ts []byte
		for _, t := range m.Tables {
			ts = append(ts, FuncRef)
			if t.HasMax {
				ts = ULEB(ULEB(append(ts, 1), uint64(t.Min)), uint64(t.Max))
			} else {
				ts = ULEB(append(ts, 0), uint64(t.Min))
			}
		}
		w(4, vec(len(m.Tables), ts))
	}
	pages := m.MemoryPages
	if pages == 0 {
		pages = 1
	}
	w(5, vec(1, ULEB([]byte{0}, uint64(pages))))
	if m.Globals > 0 {
		var gs []byte
		for range m.Globals {
			gs = append(gs, I32, 0, OpI32Const, 0, OpEnd)
		}
		w(6, vec(m.Globals, gs))
	}
	invokeIdx := uint64(m.ImportFunctions)
	var ex []byte
	ex = append(name(ex, "memory"), 0x02, 0)
	ex = ULEB(append(name(ex, "__invoke"), 0x00), invokeIdx)
	w(7, vec(2, ex))

	var code []byte
	body := vec(len(m.Locals), nil)
	for _, l := range m.Locals {
		body = append(ULEB(body, uint64(l[0])), byte(l[1]))
	}
	body = append(append(body, m.Body...), OpEnd)
	code = append(ULEB(code, uint64(len(body))), body...)
	for range m.ExtraFunctions {
		b := append(append([]byte{0}, m.Extra...), OpEnd)
		code = append(ULEB(code, uint64(len(b))), b...)
	}
	w(10, vec(1+m.ExtraFunctions, code))
	return out.Bytes()
}

// Nested returns n nested empty blocks (block ... end), i32.const 0 inside.
func Nested(n int) []byte {
	b := make([]byte, 0, 3*n+2)
	for range n {
		b = append(b, OpBlock, OpBlockEmpty)
	}
	for range n {
		b = append(b, OpEnd)
	}
	return I32Const(b, 0)
}

// BrTable returns a block holding a br_table with n targets (all 0), then
// i32.const 0.
func BrTable(n int) []byte {
	b := []byte{OpBlock, OpBlockEmpty}
	b = I32Const(b, 0)
	b = append(b, OpBrTable)
	b = ULEB(b, uint64(n))
	for range n + 1 {
		b = append(b, 0)
	}
	b = append(b, OpEnd)
	return I32Const(b, 0)
}

// Adds returns about size bytes of i32.const 1 / i32.add, leaving one i32
// on the stack: straight-line code that costs compilers memory per byte.
func Adds(size int) []byte {
	b := I32Const(nil, 1)
	for len(b) < size-4 {
		b = I32Const(b, 1)
		b = append(b, OpI32Add)
	}
	return b
}

// Shuffle returns about size bytes of blocks that copy random locals among
// the first n into each other and branch out on one: SSA construction pays
// for every local in every block. It leaves nothing on the stack.
func Shuffle(n, size int, seed uint64) []byte {
	x := seed | 1
	next := func() uint64 { // xorshift: deterministic, no math/rand state
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x % uint64(n)
	}
	var b []byte
	for len(b) < size-16 {
		b = append(b, OpBlock, OpBlockEmpty)
		for range 200 {
			b = ULEB(append(b, OpLocalGet), next())
			b = ULEB(append(b, OpLocalSet), next())
		}
		b = ULEB(append(b, OpLocalGet), next())
		b = append(b, OpBrIf, 0, OpEnd)
	}
	return b
}

// Hostile is a module that attacks the host that loads or runs it.
type Hostile struct {
	Name string
	// Limit is the module limit (runtime.ModuleLimits key) that must
	// refuse it; "invalid" when its structure must be refused as malformed;
	// "" when it is within every static limit and only the compile budget
	// can stop it.
	Limit string
	// Why says what it does to an unprotected host, as measured.
	Why  string
	Code []byte
}

// HostileModules returns the catalogue of hostile modules built in code
// (the WAT ones are testdata/src/wat/table_*.wat and tables_many.wat).
// Building all of them takes a few hundred milliseconds and about 40 MB.
func HostileModules() []Hostile {
	const MiB = 1 << 20
	ret0 := I32Const(nil, 0)
	return []Hostile{
		{"locals_4g", "locals", "one declaration of 2^32-1 locals: the decoder asks for one 4 GiB block, the Go runtime dies",
			Module{Locals: [][2]uint32{{0xffffffff, I32}}, Body: ret0}.Bytes()},
		{"locals_5m", "locals", "5 million locals: 1.1-1.4 GiB per compile",
			Module{Locals: [][2]uint32{{5_000_000, I32}}, Body: ret0}.Bytes()},
		{"nesting_300k", "nesting", "300,000 nested blocks: a compile that runs for minutes",
			Module{Body: Nested(300_000)}.Bytes()},
		{"br_table_1m", "br_table", "a br_table of a million targets: gigabytes and minutes of compile",
			Module{Body: BrTable(1_000_000)}.Bytes()},
		{"body_15m", "body_bytes", "one 15 MB function body: 2.3 GB of heap in validation",
			Module{Body: append(Adds(15*MiB), OpDrop, OpI32Const, 0)}.Bytes()},
		{"tables_100k", "tables", "100,000 tables of 2^20 entries: 800 GiB of host pointers at instantiation",
			Module{Tables: repeat(Table{Min: 1 << 20}, 100_000), Body: ret0}.Bytes()},
		{"functions_200k", "functions", "200,000 functions",
			Module{ExtraFunctions: 200_000, Body: ret0}.Bytes()},
		{"globals_100k", "globals", "100,000 globals",
			Module{Globals: 100_000, Body: ret0}.Bytes()},
		{"function_count_4g", "invalid", "a function section that declares 2^32-1 entries in 5 bytes: a decoder that trusts it allocates 16 GiB",
			Raw(Section(3, ULEB(nil, 0xffffffff)))},
		{"names_4g", "invalid", "a name section that declares 2^28 function names in a few bytes",
			Raw(Section(0, append(name(nil, "name"), Section(1, ULEB(nil, 1<<28))...)))},
		{"compile_br_tables", "", "fifteen br_tables of 65,536 targets in one 1 MiB body: within every limit, but 2.3 GB and 19 s in wazero's optimising compiler",
			Module{Body: append(brTables(MiB, 65_536), ret0...)}.Bytes()},
		{"compile_locals", "", "50,000 locals shuffled through 256 KiB of blocks: within every limit, but 3+ minutes in wazero's optimising compiler",
			Module{Locals: [][2]uint32{{50_000, I32}}, Body: append(Shuffle(50_000, 256<<10, 1), ret0...)}.Bytes()},
		{"validate_adds_3m", "", "3 MiB of additions: within every limit, the most code the interpreter validates in process (about 160 MB)",
			Module{ExtraFunctions: 3, Extra: append(Adds(MiB-64), OpDrop), Body: ret0}.Bytes()},
		{"validate_adds", "", "15 functions of 1 MiB of additions: within every limit, but 680 MB in wazero's interpreter (the controller's validation)",
			Module{ExtraFunctions: 15, Extra: append(Adds(MiB-64), OpDrop), Body: ret0}.Bytes()},
	}
}

func repeat(t Table, n int) []Table {
	ts := make([]Table, n)
	for i := range ts {
		ts[i] = t
	}
	return ts
}

// brTables fills about size bytes with br_tables of n targets each.
func brTables(size, n int) []byte {
	var b []byte
	for len(b) < size-2*n-16 {
		b = append(b, BrTable(n)...)
		b = append(b, OpDrop)
	}
	return b
}

// Section encodes one section.
func Section(id byte, payload []byte) []byte { return section(nil, id, payload) }

// Raw is a module of the wasm header followed by the given sections.
func Raw(sections ...[]byte) []byte {
	b := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}
