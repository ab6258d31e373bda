package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Profile is what Scan found in a module: the counts and maxima its limits
// are checked against, and what the host will have to allocate for it
// outside linear memory.
type Profile struct {
	Bytes int
	// Types, Imports and Functions (imported plus defined) count those
	// entries; Defined is the functions with a body.
	Types, Imports, Functions, Defined int
	Globals, Exports                   int
	Tables, Memories                   int
	DataSegments, ElementSegments      int
	ElementEntries                     int
	NameEntries                        int
	// CodeBytes sums the function bodies.
	CodeBytes int
	// MaxBodyBytes, MaxLocals, MaxNesting and MaxBrTable are the largest of
	// each over the module's functions; BrTableTargets sums the targets of
	// every br_table (compiling costs memory per target).
	MaxBodyBytes, MaxLocals, MaxNesting, MaxBrTable int
	BrTableTargets                                  int
	// TableGrow is true when a function uses table.grow.
	TableGrow bool
	// TableBytes is the host memory the module's tables can take at most:
	// every table's entries at its minimum, or at its maximum when the
	// module grows tables (counted twice: growing copies the table).
	TableBytes uint64
}

// scanner reads a module's sections without building anything, checking
// structure as far as needed to count honestly and every ModuleLimits bound
// as soon as the count is known.
type scanner struct {
	lim ModuleLimits
	p   Profile
	// tables as declared (imported and defined), to size them at the end.
	tables []tableDecl

	// Hooks for addStopCheck, which walks a module with this scanner:
	// onLoop gets the module offset just after each loop's block type in a
	// function body, onGlobal the index of every global.get and global.set.
	onLoop   func(pos int)
	onGlobal func(index uint64) error
}

type tableDecl struct {
	min, max uint64
	hasMax   bool
}

// errTruncated is the cause of every read past the end of a section.
var errTruncated = errors.New("unexpected end")

// reader is a cursor over one section or body.
type reader struct {
	b   []byte
	off int // absolute offset of b[0] in the module, for messages
	i   int
}

func (r *reader) left() int { return len(r.b) - r.i }

func (r *reader) byte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *reader) skip(n uint64) error {
	if n > uint64(r.left()) {
		return errTruncated
	}
	r.i += int(n)
	return nil
}

// uleb reads an unsigned LEB128 of at most bits bits (32 or 64), as the
// spec allows: at most ceil(bits/7) bytes, the unused bits of the last byte
// zero.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	last := (bits+6)/7 - 1
	for n := uint(0); ; n++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		shift := 7 * n
		if n == last {
			if c&0x80 != 0 {
				return 0, errors.New("integer representation too long")
			}
			if c>>(bits-shift) != 0 {
				return 0, errors.New("integer too large")
			}
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

func (r *reader) u32() (uint64, error) { return r.uleb(32) }

// sleb skips a signed LEB128 of at most bits bits.
func (r *reader) sleb(bits uint) error {
	max := int((bits + 6) / 7)
	for n := 1; ; n++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
		if n == max {
			return errors.New("integer representation too long")
		}
	}
}

// count reads a vector length and checks it against what is left: every
// element takes at least minSize bytes, so a valid module never declares
// more, and a hostile one cannot make a decoder preallocate for entries it
// does not hold.
func (r *reader) count(minSize int) (int, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if n > uint64(r.left()/minSize) {
		return 0, fmt.Errorf("declares %d entries but only %d bytes follow", n, r.left())
	}
	return int(n), nil
}

// name skips a length-prefixed name.
func (r *reader) name() error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	return r.skip(n)
}

// Section ids, and the order the spec requires (custom sections anywhere).
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

var sectionRank = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secGlobal: 6,
	secExport: 7, secStart: 8, secElement: 9, secDataCount: 10, secCode: 11, secData: 12,
}

var sectionNames = map[byte]string{
	secCustom: "custom", secType: "type", secImport: "import", secFunction: "function",
	secTable: "table", secMemory: "memory", secGlobal: "global", secExport: "export",
	secStart: "start", secElement: "element", secCode: "code", secData: "data", secDataCount: "data count",
}

// Scan checks code against lim without compiling it and returns what it
// found. It reads every section and every instruction once (linear time, no
// allocation proportional to what the module declares) and refuses, before
// anything else sees the bytes:
//   - structure that would make a decoder allocate for entries that are not
//     there (KindInvalidModule);
//   - anything over a limit (KindModuleLimit, naming the limit).
//
// It does not validate types or stack discipline: wazero does that next,
// on a module now known to be small enough to validate and compile.
func Scan(code []byte, lim ModuleLimits) (Profile, error) {
	lim = lim.withDefaults()
	s := &scanner{lim: lim}
	s.p.Bytes = len(code)
	if len(code) > lim.Bytes {
		return s.p, limitError("bytes", "", uint64(len(code)), uint64(lim.Bytes))
	}
	if err := checkMagic(code); err != nil {
		return s.p, err
	}
	if len(code) < 8 || binary.LittleEndian.Uint32(code[4:8]) != 1 {
		return s.p, newError(KindInvalidModule, "unsupported wasm binary version (want 1)")
	}
	r := &reader{b: code, i: 8}
	lastRank := 0
	declared := -1 // functions declared by the function section
	for r.left() > 0 {
		start := r.i
		id, _ := r.byte()
		size, err := r.u32()
		if err == nil && size > uint64(r.left()) {
			err = errTruncated
		}
		if err != nil {
			return s.p, newError(KindInvalidModule, "section header at offset %d: %v", start, err)
		}
		sec := &reader{b: code[r.i : r.i+int(size)], off: r.i}
		r.i += int(size)
		if id != secCustom {
			rank, ok := sectionRank[id]
			if !ok {
				return s.p, newError(KindInvalidModule, "unknown section id %d at offset %d", id, start)
			}
			if rank <= lastRank {
				return s.p, newError(KindInvalidModule, "%s section at offset %d is out of order or repeated", sectionNames[id], start)
			}
			lastRank = rank
		}
		if id == secFunction {
			n, err := sec.count(1)
			if err != nil {
				return s.p, s.malformed(id, sec, err)
			}
			declared = n
			sec.i = 0
		}
		if id == secCode && declared < 0 {
			declared = 0
		}
		if err := s.section(id, sec); err != nil {
			return s.p, err
		}
	}
	if declared >= 0 && declared != s.p.Defined {
		return s.p, newError(KindInvalidModule, "the function section declares %d functions but the code section holds %d bodies", declared, s.p.Defined)
	}
	for _, t := range s.tables {
		entries, what := t.min, "minimum"
		if s.p.TableGrow {
			if !t.hasMax {
				return s.p, newError(KindModuleLimit, "the module uses table.grow but a table declares no maximum size: declare one of at most %d entries (module limit table_entries)", lim.TableEntries)
			}
			entries, what = t.max, "maximum"
		}
		if entries > uint64(lim.TableEntries) {
			return s.p, limitError("table_entries", "a table's "+what, entries, uint64(lim.TableEntries))
		}
		cost := entries * tableEntryBytes
		if s.p.TableGrow {
			cost *= 2
		}
		s.p.TableBytes += cost
	}
	return s.p, nil
}

func (s *scanner) malformed(id byte, r *reader, err error) *Error {
	return newError(KindInvalidModule, "%s section, offset %d: %v", sectionNames[id], r.off+r.i, err)
}

// over reports a count over a limit, or nil.
func over(key, where string, got, max int) error {
	if got > max {
		return limitError(key, where, uint64(got), uint64(max))
	}
	return nil
}

func (s *scanner) section(id byte, r *reader) error {
	var err error
	switch id {
	case secCustom:
		err = s.custom(r)
	case secType:
		err = s.types(r)
	case secImport:
		err = s.imports(r)
	case secFunction:
		var n int
		if n, err = r.count(1); err == nil {
			s.p.Functions += n
			if err := over("functions", "", s.p.Functions, s.lim.Functions); err != nil {
				return err
			}
			for range n {
				if _, err = r.u32(); err != nil {
					break
				}
			}
		}
	case secTable:
		err = s.tableSection(r)
	case secMemory:
		var n int
		if n, err = r.count(2); err == nil {
			s.p.Memories += n
			for i := 0; i < n && err == nil; i++ {
				_, err = s.limits(r)
			}
		}
	case secGlobal:
		err = s.globals(r)
	case secExport:
		var n int
		if n, err = r.count(3); err == nil {
			s.p.Exports = n
			if err := over("exports", "", n, s.lim.Exports); err != nil {
				return err
			}
			for i := 0; i < n && err == nil; i++ {
				if err = r.name(); err == nil {
					if _, err = r.byte(); err == nil {
						_, err = r.u32()
					}
				}
			}
		}
	case secStart, secDataCount:
		_, err = r.u32()
	case secElement:
		err = s.elements(r)
	case secCode:
		err = s.code(r)
	case secData:
		err = s.data(r)
	}
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return rerr
		}
		return s.malformed(id, r, err)
	}
	if id != secCustom && r.left() != 0 {
		return s.malformed(id, r, fmt.Errorf("%d bytes left over", r.left()))
	}
	return nil
}

func (s *scanner) types(r *reader) error {
	n, err := r.count(3)
	if err != nil {
		return err
	}
	s.p.Types = n
	if err := over("types", "", n, s.lim.Types); err != nil {
		return err
	}
	for i := range n {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("type %d: form 0x%x is not a function type", i, form)
		}
		arity := 0
		for range 2 { // params, then results
			k, err := r.count(1)
			if err != nil {
				return err
			}
			arity += k
			if err := r.skip(uint64(k)); err != nil {
				return err
			}
		}
		if err := over("type_arity", fmt.Sprintf("type %d", i), arity, s.lim.TypeArity); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) imports(r *reader) error {
	n, err := r.count(4)
	if err != nil {
		return err
	}
	s.p.Imports = n
	if err := over("imports", "", n, s.lim.Imports); err != nil {
		return err
	}
	for range n {
		if err := r.name(); err != nil {
			return err
		}
		if err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // function
			s.p.Functions++
			if err := over("functions", "", s.p.Functions, s.lim.Functions); err != nil {
				return err
			}
			_, err = r.u32()
		case 0x01: // table
			if _, err = r.byte(); err == nil {
				err = s.table(r)
			}
		case 0x02: // memory
			s.p.Memories++
			_, err = s.limits(r)
		case 0x03: // global
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		default:
			return fmt.Errorf("import kind 0x%x is not supported", kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// limits reads a limits pair; hasMax tells whether a maximum was given.
func (s *scanner) limits(r *reader) (tableDecl, error) {
	flag, err := r.byte()
	if err != nil {
		return tableDecl{}, err
	}
	if flag > 1 {
		return tableDecl{}, fmt.Errorf("limits flag 0x%x is not supported (shared or 64-bit)", flag)
	}
	var d tableDecl
	if d.min, err = r.u32(); err != nil {
		return d, err
	}
	if flag == 1 {
		d.hasMax = true
		d.max, err = r.u32()
	}
	return d, err
}

func (s *scanner) table(r *reader) error {
	s.p.Tables++
	if err := over("tables", "", s.p.Tables, s.lim.Tables); err != nil {
		return err
	}
	d, err := s.limits(r)
	if err != nil {
		return err
	}
	if d.min > uint64(s.lim.TableEntries) {
		return limitError("table_entries", "a table's minimum", d.min, uint64(s.lim.TableEntries))
	}
	s.tables = append(s.tables, d)
	return nil
}

func (s *scanner) tableSection(r *reader) error {
	n, err := r.count(3)
	if err != nil {
		return err
	}
	for range n {
		if _, err := r.byte(); err != nil { // reference type
			return err
		}
		if err := s.table(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) globals(r *reader) error {
	n, err := r.count(4)
	if err != nil {
		return err
	}
	s.p.Globals = n
	if err := over("globals", "", n, s.lim.Globals); err != nil {
		return err
	}
	for range n {
		if err := r.skip(2); err != nil { // value type, mutability
			return err
		}
		if err := s.constExpr(r); err != nil {
			return err
		}
	}
	return nil
}

// constExpr skips a constant expression up to and including its end.
func (s *scanner) constExpr(r *reader) error {
	f := funcScan{s: s, r: r, depth: 1}
	return f.instructions()
}

func (s *scanner) elements(r *reader) error {
	n, err := r.count(2)
	if err != nil {
		return err
	}
	s.p.ElementSegments = n
	if err := over("element_segments", "", n, s.lim.ElementSegments); err != nil {
		return err
	}
	for i := range n {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		if flags > 7 {
			return fmt.Errorf("element segment %d: flags %d", i, flags)
		}
		if flags&1 == 0 { // active: a table index (flag 2) and an offset
			if flags&2 != 0 {
				if _, err := r.u32(); err != nil {
					return err
				}
			}
			if err := s.constExpr(r); err != nil {
				return err
			}
		}
		if flags&3 != 0 { // element kind or reference type byte
			if _, err := r.byte(); err != nil {
				return err
			}
		}
		exprs := flags&4 != 0
		k, err := r.count(1)
		if err != nil {
			return err
		}
		s.p.ElementEntries += k
		if err := over("element_entries", "", s.p.ElementEntries, s.lim.ElementEntries); err != nil {
			return err
		}
		for range k {
			if exprs {
				err = s.constExpr(r)
			} else {
				_, err = r.u32()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *scanner) data(r *reader) error {
	n, err := r.count(2)
	if err != nil {
		return err
	}
	s.p.DataSegments = n
	if err := over("data_segments", "", n, s.lim.DataSegments); err != nil {
		return err
	}
	for i := range n {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		switch flags {
		case 0:
			err = s.constExpr(r)
		case 1:
		case 2:
			if _, err = r.u32(); err == nil {
				err = s.constExpr(r)
			}
		default:
			return fmt.Errorf("data segment %d: flags %d", i, flags)
		}
		if err != nil {
			return err
		}
		if err := r.name(); err != nil { // the bytes: a length and that many
			return err
		}
	}
	return nil
}

func (s *scanner) code(r *reader) error {
	n, err := r.count(2)
	if err != nil {
		return err
	}
	s.p.Defined = n
	for i := range n {
		size, err := r.u32()
		if err != nil {
			return err
		}
		if size > uint64(r.left()) {
			return errTruncated
		}
		fn := funcName(s.p.Functions - n + i)
		if err := over("body_bytes", fn.String(), int(size), s.lim.BodyBytes); err != nil {
			return err
		}
		s.p.CodeBytes += int(size)
		s.p.MaxBodyBytes = max(s.p.MaxBodyBytes, int(size))
		body := reader{b: r.b[r.i : r.i+int(size)], off: r.off + r.i}
		r.i += int(size)
		if err := s.body(fn, &body); err != nil {
			var rerr *Error
			if errors.As(err, &rerr) {
				return rerr
			}
			return newError(KindInvalidModule, "%s, offset %d: %v", fn, body.off+body.i, err)
		}
	}
	return nil
}

// funcName names a function in messages; the text is made only when one
// is written.
type funcName int

func (f funcName) String() string { return fmt.Sprintf("function %d", int(f)) }

func (s *scanner) body(fn funcName, r *reader) error {
	groups, err := r.count(2)
	if err != nil {
		return err
	}
	var locals uint64
	for range groups {
		k, err := r.u32()
		if err != nil {
			return err
		}
		if _, err := r.byte(); err != nil {
			return err
		}
		locals += k
		if locals > uint64(s.lim.Locals) {
			return limitError("locals", fn.String(), locals, uint64(s.lim.Locals))
		}
	}
	s.p.MaxLocals = max(s.p.MaxLocals, int(locals))
	f := funcScan{s: s, r: r, fn: fn, depth: 1, body: true}
	if err := f.instructions(); err != nil {
		return err
	}
	if r.left() != 0 {
		return fmt.Errorf("%d bytes after the end of the body", r.left())
	}
	return nil
}

// custom counts the entries of the "name" section; other custom sections
// are skipped (wazero does not decode them: DWARF is off).
func (s *scanner) custom(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	if n > uint64(r.left()) {
		return errTruncated
	}
	name := string(r.b[r.i : r.i+int(n)])
	r.i += int(n)
	if name != "name" {
		return nil
	}
	for r.left() > 0 {
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		if size > uint64(r.left()) {
			return errTruncated
		}
		sub := &reader{b: r.b[r.i : r.i+int(size)], off: r.off + r.i}
		r.i += int(size)
		switch id {
		case 1: // function names: vec(index, name)
			if err := s.nameMap(sub); err != nil {
				return err
			}
		case 2: // local names: vec(index, vec(index, name))
			k, err := sub.count(2)
			if err != nil {
				return err
			}
			s.p.NameEntries += k
			for range k {
				if _, err := sub.u32(); err != nil {
					return err
				}
				if err := s.nameMap(sub); err != nil {
					return err
				}
			}
		}
		if err := over("name_entries", "", s.p.NameEntries, s.lim.NameEntries); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) nameMap(r *reader) error {
	k, err := r.count(2)
	if err != nil {
		return err
	}
	s.p.NameEntries += k
	if err := over("name_entries", "", s.p.NameEntries, s.lim.NameEntries); err != nil {
		return err
	}
	for range k {
		if _, err := r.u32(); err != nil {
			return err
		}
		if err := r.name(); err != nil {
			return err
		}
	}
	return nil
}

// funcScan walks one expression's instructions, tracking block nesting.
type funcScan struct {
	s     *scanner
	r     *reader
	fn    funcName
	depth int
	body  bool // a function body, not a constant expression
}

// memarg skips a memory access's alignment and offset.
func (f *funcScan) memarg() error {
	if _, err := f.r.u32(); err != nil {
		return err
	}
	_, err := f.r.u32()
	return err
}

// blockType skips a block type: 0x40, a value type, or a type index (s33).
func (f *funcScan) blockType() error {
	if f.r.i >= len(f.r.b) {
		return errTruncated
	}
	switch f.r.b[f.r.i] {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		f.r.i++
		return nil
	}
	return f.r.sleb(33)
}

// instructions reads until the end that closes depth 1. Opcodes are those
// of the WebAssembly 2.0 core features wazero enables (api.CoreFeaturesV2);
// anything else is refused here, as wazero would.
func (f *funcScan) instructions() error {
	r := f.r
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
			f.depth++
			if f.depth > f.s.p.MaxNesting {
				f.s.p.MaxNesting = f.depth
				if f.depth > f.s.lim.Nesting {
					return limitError("nesting", f.fn.String(), uint64(f.depth), uint64(f.s.lim.Nesting))
				}
			}
			err = f.blockType()
			if op == 0x03 && err == nil && f.body && f.s.onLoop != nil {
				f.s.onLoop(r.off + r.i)
			}
		case (op == 0x23 || op == 0x24) && f.s.onGlobal != nil: // global.get, global.set
			var idx uint64
			if idx, err = r.u32(); err == nil {
				err = f.s.onGlobal(idx)
			}
		case op == 0x0b: // end
			f.depth--
			if f.depth == 0 {
				return nil
			}
		case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0f || op == 0x1a || op == 0x1b:
			// unreachable, nop, else, return, drop, select
		case op == 0x0c || op == 0x0d || op == 0x10 || (op >= 0x20 && op <= 0x26) || op == 0xd2:
			// br, br_if, call, local/global get/set/tee, table.get/set, ref.func
			_, err = r.u32()
		case op == 0x0e: // br_table
			var n int
			if n, err = r.count(1); err == nil {
				f.s.p.MaxBrTable = max(f.s.p.MaxBrTable, n)
				f.s.p.BrTableTargets += n
				if n > f.s.lim.BrTable {
					return limitError("br_table", f.fn.String(), uint64(n), uint64(f.s.lim.BrTable))
				}
				for i := 0; i <= n && err == nil; i++ {
					_, err = r.u32()
				}
			}
		case op == 0x11: // call_indirect
			if _, err = r.u32(); err == nil {
				_, err = r.u32()
			}
		case op == 0x1c: // select t*
			var n int
			if n, err = r.count(1); err == nil {
				err = r.skip(uint64(n))
			}
		case op >= 0x28 && op <= 0x3e: // loads and stores
			err = f.memarg()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			_, err = r.u32()
		case op == 0x41:
			err = r.sleb(32)
		case op == 0x42:
			err = r.sleb(64)
		case op == 0x43:
			err = r.skip(4)
		case op == 0x44:
			err = r.skip(8)
		case op >= 0x45 && op <= 0xc4: // numeric, sign extension
		case op == 0xd0: // ref.null t
			_, err = r.byte()
		case op == 0xd1: // ref.is_null
		case op == 0xfc:
			err = f.prefixFC()
		case op == 0xfd:
			err = f.prefixFD()
		default:
			return fmt.Errorf("opcode 0x%02x is not supported", op)
		}
		if err != nil {
			return err
		}
	}
}

// prefixFC: saturating truncation, bulk memory and table instructions.
func (f *funcScan) prefixFC() error {
	r := f.r
	sub, err := r.u32()
	if err != nil {
		return err
	}
	var imms int // u32 immediates
	switch {
	case sub <= 7: // trunc_sat
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		imms = 2
	case sub == 9, sub == 11, sub == 13, sub == 16, sub == 17: // data.drop, memory.fill, elem.drop, table.size, table.fill
		imms = 1
	case sub == 15: // table.grow
		f.s.p.TableGrow = true
		imms = 1
	default:
		return fmt.Errorf("opcode 0xfc %d is not supported", sub)
	}
	for range imms {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// prefixFD: the fixed-width SIMD instructions.
func (f *funcScan) prefixFD() error {
	r := f.r
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11, sub == 92, sub == 93: // loads, store, load_zero
		return f.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		return r.skip(16)
	case sub >= 21 && sub <= 34: // extract_lane, replace_lane
		return r.skip(1)
	case sub >= 84 && sub <= 91: // load_lane, store_lane
		if err := f.memarg(); err != nil {
			return err
		}
		return r.skip(1)
	case sub <= 255:
		return nil
	}
	return fmt.Errorf("opcode 0xfd %d is not supported", sub)
}
