package runtime

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
)

// packData returns code with its data segments merged into as few as
// possible, or code itself when that cannot be done without changing what
// the module does, or would not pay.
//
// wazero copies a module's active data segments into linear memory at
// every instantiation, and spends far more per segment than per byte: it
// evaluates each offset expression afresh, allocating as it goes. A Go
// guest (wasip1) has tens of thousands of small segments (hello_go:
// 36,556 segments holding 1.2 MB), which made applying them 1.2 ms of its
// instantiation, against tens of microseconds for copying the bytes.
// Merging segments whose gaps are small, the gaps filled with zeros,
// leaves memory after instantiation byte for byte what it was: memory is
// zero before the segments are applied.
//
// The merge is done only when the module cannot tell: every segment is
// active in memory 0 at a constant i32 offset, no two overlap (so
// applying them in any order gives the same bytes), and there is no data count section (without one no instruction
// may name a segment: memory.init and data.drop need it to validate). An
// out-of-bounds segment still fails the instantiation, as the extent of
// the segments does not change.
//
// The filling is bounded: at most maxPackGap zeros between two segments,
// and at most as many zeros in all as the module has bytes, so the packed
// module is at most twice the size of the original, whatever it declares.
// The runtime compiles and instantiates the packed module; everything
// reported about the module (Info, its digest, the limits checked by Scan)
// is about the code as uploaded. Both the compile worker and the process
// pack the same code the same way, so the disk cache holds the packed
// module's compiled code.
func packData(code []byte) []byte {
	secs, ok := sections(code)
	if !ok {
		return code
	}
	var data *section
	for i := range secs {
		switch secs[i].id {
		case secDataCount:
			return code
		case secData:
			data = &secs[i]
		}
	}
	if data == nil {
		return code
	}
	segs, ok := activeSegments(code[data.body:data.end])
	if !ok || len(segs) < minPackSegments {
		return code
	}
	packed := mergeSegments(segs, len(code))
	if len(packed) >= len(segs) {
		return code
	}
	body := encodeSegments(packed)
	out := make([]byte, 0, len(code)-(data.end-data.start)+len(body)+6)
	out = append(out, code[:data.start]...)
	out = append(out, secData)
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = append(out, body...)
	return append(out, code[data.end:]...)
}

const (
	// minPackSegments: below this many segments packing saves little.
	minPackSegments = 64
	// maxPackGap is the widest gap filled with zeros to merge two
	// segments: copying that many zeros costs less than wazero's
	// per-segment work (about 30 ns).
	maxPackGap = 256
)

// section is one top-level section of a module: its id, where it starts
// (the id byte), where its body starts and where it ends.
type section struct {
	id               byte
	start, body, end int
}

// sections splits a module into its sections, or reports false when its
// framing is broken (Scan has refused such a module before this runs).
func sections(code []byte) ([]section, bool) {
	if len(code) < 8 {
		return nil, false
	}
	var out []section
	r := &reader{b: code, i: 8}
	for r.left() > 0 {
		start := r.i
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil || size > uint64(r.left()) {
			return nil, false
		}
		out = append(out, section{id: id, start: start, body: r.i, end: r.i + int(size)})
		r.i += int(size)
	}
	return out, true
}

// dataSegment is an active segment of memory 0: its bytes go at offset.
type dataSegment struct {
	offset uint32
	init   []byte
}

func (s dataSegment) end() uint64 { return uint64(s.offset) + uint64(len(s.init)) }

// activeSegments decodes a data section whose segments are all active in
// memory 0 at constant i32 offsets and do not overlap, and returns them by
// offset; it reports false for anything else.
func activeSegments(b []byte) ([]dataSegment, bool) {
	r := &reader{b: b}
	n, err := r.count(2)
	if err != nil {
		return nil, false
	}
	segs := make([]dataSegment, 0, n)
	for range n {
		flags, err := r.u32()
		if err != nil {
			return nil, false
		}
		switch flags {
		case 0:
		case 2: // an explicit memory index, which must be 0
			if mem, err := r.u32(); err != nil || mem != 0 {
				return nil, false
			}
		default: // passive
			return nil, false
		}
		if op, err := r.byte(); err != nil || op != 0x41 { // i32.const
			return nil, false
		}
		off, err := r.i32()
		if err != nil {
			return nil, false
		}
		if end, err := r.byte(); err != nil || end != 0x0b {
			return nil, false
		}
		size, err := r.u32()
		if err != nil || size > uint64(r.left()) {
			return nil, false
		}
		s := dataSegment{offset: uint32(off), init: r.b[r.i : r.i+int(size)]}
		r.i += int(size)
		segs = append(segs, s)
	}
	if r.left() != 0 {
		return nil, false
	}
	// Without overlaps the order in which segments are applied makes no
	// difference (Go's linker emits a few out of order).
	slices.SortStableFunc(segs, func(a, b dataSegment) int { return cmp.Compare(a.offset, b.offset) })
	for i := 1; i < len(segs); i++ {
		if uint64(segs[i].offset) < segs[i-1].end() {
			return nil, false
		}
	}
	return segs, true
}

// i32 reads a signed LEB128 of at most 32 bits in its shortest form; any
// other form is an error here (packData then leaves the module alone, and
// wazero judges it).
func (r *reader) i32() (int32, error) {
	start := r.i
	var v int64
	for n := uint(0); ; n++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if n == 4 && c&0x80 != 0 {
			return 0, errTruncated
		}
		v |= int64(c&0x7f) << (7 * n)
		if c&0x80 == 0 {
			if c&0x40 != 0 {
				v |= -1 << (7 * (n + 1))
			}
			break
		}
	}
	if v != int64(int32(v)) || string(appendSleb32(nil, int32(v))) != string(r.b[start:r.i]) {
		return 0, errors.New("not the shortest form of an i32")
	}
	return int32(v), nil
}

// mergeSegments merges neighbours closer than maxPackGap, filling at most
// budget zeros in all.
func mergeSegments(segs []dataSegment, budget int) []dataSegment {
	var out []dataSegment
	for i := 0; i < len(segs); {
		j := i + 1
		for ; j < len(segs); j++ {
			gap := uint64(segs[j].offset) - segs[j-1].end()
			if gap > maxPackGap || gap > uint64(budget) {
				break
			}
			budget -= int(gap)
		}
		if j == i+1 {
			out = append(out, segs[i])
			i = j
			continue
		}
		base := segs[i].offset
		b := make([]byte, segs[j-1].end()-uint64(base))
		for _, s := range segs[i:j] {
			copy(b[s.offset-base:], s.init)
		}
		out = append(out, dataSegment{offset: base, init: b})
		i = j
	}
	return out
}

// encodeSegments writes a data section's body.
func encodeSegments(segs []dataSegment) []byte {
	size := 5
	for _, s := range segs {
		size += 13 + len(s.init)
	}
	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(len(segs)))
	for _, s := range segs {
		b = append(b, 0, 0x41)
		b = appendSleb32(b, int32(s.offset))
		b = append(b, 0x0b)
		b = binary.AppendUvarint(b, uint64(len(s.init)))
		b = append(b, s.init...)
	}
	return b
}

func appendSleb32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
