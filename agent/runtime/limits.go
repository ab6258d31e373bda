package runtime

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ModuleLimits bound what a module may declare. Scan checks them on the raw
// bytes before wazero decodes, validates or compiles anything, so a module
// of a few dozen bytes cannot make the host allocate gigabytes (wazero's
// decoder sizes its slices from the counts a module declares) or compile for
// minutes. Both the controller (on upload) and the agent (on every Load: it
// does not trust its controller) check them.
//
// A zero field takes the default of DefaultModuleLimits; every legitimate
// fixture (C, Rust, Go up to a 16 MiB guest) passes the defaults with room
// to spare (docs/decisions.md has the measured profiles).
type ModuleLimits struct {
	// Bytes bounds the whole module. Default 16 MiB, the controller's
	// upload limit.
	Bytes int
	// Functions bounds imported plus defined functions. Default 100,000.
	Functions int
	// BodyBytes bounds one function body. Default 1 MiB.
	BodyBytes int
	// Locals bounds the locals one function declares (parameters not
	// included). Default 50,000.
	Locals int
	// Nesting bounds how deeply blocks, loops and ifs nest in one function
	// (the function body itself is depth 1). Default 10,000.
	Nesting int
	// BrTable bounds the targets of one br_table. Default 65,536.
	BrTable int
	// Types bounds the type section; TypeArity the parameters plus results
	// of one type. Defaults 10,000 and 1,000.
	Types, TypeArity int
	// Imports and Exports bound those sections. Defaults 1,000 and 10,000.
	Imports, Exports int
	// Globals bounds defined globals. Default 10,000.
	Globals int
	// Tables bounds tables; TableEntries the entries one table can ever
	// hold: its minimum, or its maximum when the module uses table.grow (a
	// table that may grow must declare a maximum). Defaults 16 and 1 Mi.
	// Tables are host memory outside linear memory; their entries also count
	// against an invocation's memory cap (TableBytes).
	Tables, TableEntries int
	// DataSegments and ElementSegments bound those sections, ElementEntries
	// the summed entries of every element segment. Defaults 100,000, 10,000
	// and 1 Mi.
	DataSegments, ElementSegments, ElementEntries int
	// NameEntries bounds the entries of the "name" custom section (function
	// and local names), which wazero decodes. Default 1 Mi.
	NameEntries int
}

// DefaultModuleLimits are the limits of a zero ModuleLimits.
var DefaultModuleLimits = ModuleLimits{
	Bytes:           16 << 20,
	Functions:       100_000,
	BodyBytes:       1 << 20,
	Locals:          50_000,
	Nesting:         10_000,
	BrTable:         65_536,
	Types:           10_000,
	TypeArity:       1_000,
	Imports:         1_000,
	Exports:         10_000,
	Globals:         10_000,
	Tables:          16,
	TableEntries:    1 << 20,
	DataSegments:    100_000,
	ElementSegments: 10_000,
	ElementEntries:  1 << 20,
	NameEntries:     1 << 20,
}

// limitFields names every field of ModuleLimits: the key of
// ParseModuleLimits and of error messages, and what it counts.
var limitFields = []struct {
	key, what string
	field     func(*ModuleLimits) *int
}{
	{"bytes", "module size in bytes", func(l *ModuleLimits) *int { return &l.Bytes }},
	{"functions", "functions", func(l *ModuleLimits) *int { return &l.Functions }},
	{"body_bytes", "body size in bytes", func(l *ModuleLimits) *int { return &l.BodyBytes }},
	{"locals", "locals", func(l *ModuleLimits) *int { return &l.Locals }},
	{"nesting", "block nesting depth", func(l *ModuleLimits) *int { return &l.Nesting }},
	{"br_table", "br_table targets", func(l *ModuleLimits) *int { return &l.BrTable }},
	{"types", "types", func(l *ModuleLimits) *int { return &l.Types }},
	{"type_arity", "parameters plus results", func(l *ModuleLimits) *int { return &l.TypeArity }},
	{"imports", "imports", func(l *ModuleLimits) *int { return &l.Imports }},
	{"exports", "exports", func(l *ModuleLimits) *int { return &l.Exports }},
	{"globals", "globals", func(l *ModuleLimits) *int { return &l.Globals }},
	{"tables", "tables", func(l *ModuleLimits) *int { return &l.Tables }},
	{"table_entries", "table entries", func(l *ModuleLimits) *int { return &l.TableEntries }},
	{"data_segments", "data segments", func(l *ModuleLimits) *int { return &l.DataSegments }},
	{"element_segments", "element segments", func(l *ModuleLimits) *int { return &l.ElementSegments }},
	{"element_entries", "element entries", func(l *ModuleLimits) *int { return &l.ElementEntries }},
	{"name_entries", "name section entries", func(l *ModuleLimits) *int { return &l.NameEntries }},
}

// withDefaults returns l with every zero or negative field taken from
// DefaultModuleLimits.
func (l ModuleLimits) withDefaults() ModuleLimits {
	d := DefaultModuleLimits
	for _, f := range limitFields {
		if v := f.field(&l); *v <= 0 {
			*v = *f.field(&d)
		}
	}
	return l
}

// ParseModuleLimits reads "key=value,key=value" (keys as in String, e.g.
// "locals=100000,nesting=5000"); keys not given stay zero, which means
// their default. An empty string is all defaults.
func ParseModuleLimits(s string) (ModuleLimits, error) {
	var l ModuleLimits
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return l, fmt.Errorf("module limits: %q: want key=value", kv)
		}
		i := slices.IndexFunc(limitFields, func(f struct {
			key, what string
			field     func(*ModuleLimits) *int
		}) bool {
			return f.key == strings.TrimSpace(k)
		})
		if i < 0 {
			return l, fmt.Errorf("module limits: unknown limit %q (known: %s)", k, limitKeys())
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			return l, fmt.Errorf("module limits: %s=%q: want a positive whole number", k, v)
		}
		*limitFields[i].field(&l) = n
	}
	return l, nil
}

func limitKeys() string {
	keys := make([]string, len(limitFields))
	for i, f := range limitFields {
		keys[i] = f.key
	}
	return strings.Join(keys, ", ")
}

// String renders every limit as ParseModuleLimits reads them.
func (l ModuleLimits) String() string {
	l = l.withDefaults()
	var b strings.Builder
	for i, f := range limitFields {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", f.key, *f.field(&l))
	}
	return b.String()
}

// tableEntryBytes is what one table entry costs the host: wazero keeps a
// table as a slice of pointers.
const tableEntryBytes = 8

// limitError is the error of a module over one of its limits: where (the
// function, the table...), what it declares, and the limit by its key.
func limitError(key, where string, got, max uint64) *Error {
	what := key
	for _, f := range limitFields {
		if f.key == key {
			what = f.what
		}
	}
	if where != "" {
		where += ": "
	}
	return &Error{Kind: KindModuleLimit, Msg: fmt.Sprintf("%s%s %d is over the limit of %d (module limit %s)", where, what, got, max, key)}
}
