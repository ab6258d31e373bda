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
