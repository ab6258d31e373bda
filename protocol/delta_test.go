package protocol

import (
	"errors"
	"fmt"
	"testing"
)

// A delta an agent must refuse whole: a name twice (as two upserts, or an
// upsert and a remove), a function without a module or a name, a digest
// that is not 32 bytes, more names than MaxDeltaFunctions.
func TestDesiredDeltaHostile(t *testing.T) {
	fn := func(m, n string) []byte { f := DesiredFunction{Module: m, Name: n}; return f.Append(nil) }
	rm := func(m, n string) []byte { e := encoder{}; e.string(1, m); e.string(2, n); return e.buf }
	field := func(e *encoder, tag uint64, v []byte) { e.header(tag, len(v)); e.buf = append(e.buf, v...) }
	many := encoder{}
	for i := range MaxDeltaFunctions + 1 {
		field(&many, 4, rm("m", fmt.Sprint(i)))
	}
	cases := map[string]func(e *encoder){
		"upsert twice":          func(e *encoder) { field(e, 3, fn("m", "f")); field(e, 3, fn("m", "f")) },
		"upsert and remove":     func(e *encoder) { field(e, 3, fn("m", "f")); field(e, 4, rm("m", "f")) },
		"remove twice":          func(e *encoder) { field(e, 4, rm("m", "f")); field(e, 4, rm("m", "f")) },
		"upsert without name":   func(e *encoder) { field(e, 3, fn("m", "")) },
		"remove without module": func(e *encoder) { field(e, 4, rm("", "f")) },
		"short base":            func(e *encoder) { field(e, 1, make([]byte, 31)) },
		"long result":           func(e *encoder) { field(e, 2, make([]byte, 33)) },
		"too many":              func(e *encoder) { e.buf = many.buf },
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			var e encoder
			build(&e)
			var m DesiredDelta
			if err := m.UnmarshalBinary(e.buf); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	// The bound itself is allowed.
	var e encoder
	for i := range MaxDeltaFunctions {
		field(&e, 4, rm("m", fmt.Sprint(i)))
	}
	var m DesiredDelta
	if err := m.UnmarshalBinary(e.buf); err != nil || len(m.Removes) != MaxDeltaFunctions {
		t.Fatalf("%d removes: %v", len(m.Removes), err)
	}
}
