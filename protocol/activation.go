package protocol

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// Activation ids name one invocation everywhere: in results, outboxes,
// activation records and sink documents (the CouchDB _id), so a replay is
// recognised as the same activation.
//
// Layout (ULID-like, 26 characters of Crockford base32, sortable as text):
// 48 bits of Unix milliseconds, then 80 random bits. Ids made in the same
// millisecond by one process increase monotonically (the random part is
// incremented), so ids from one agent sort in the order they were made;
// ids from different agents never collide in practice (80 random bits).
const activationAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idGen makes monotonic ids; the process shares one (activationGen).
type idGen struct {
	sync.Mutex
	lastMS uint64
	hi     uint16 // top 16 of the 80 random bits
	lo     uint64 // low 64
}

var activationGen idGen

// NewActivationID returns a new id; now is usually time.Now().
func NewActivationID(now time.Time) string { return activationGen.next(now) }

func (g *idGen) next(now time.Time) string {
	ms := uint64(now.UnixMilli())
	g.Lock()
	if ms <= g.lastMS {
		ms = g.lastMS // clock went back or same ms: keep order
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	} else {
		var b [10]byte
		rand.Read(b[:])
		g.hi = binary.BigEndian.Uint16(b[:2])
		g.lo = binary.BigEndian.Uint64(b[2:])
		g.lastMS = ms
	}
	hi, lo := g.hi, g.lo
	g.Unlock()

	// 128 bits: ms(48) | hi(16) | lo(64), encoded as 26 base32 digits (130 bits, top 2 zero).
	var out [26]byte
	top := ms<<16 | uint64(hi) // 64 bits
	for i := 25; i >= 0; i-- {
		out[i] = activationAlphabet[lo&31]
		lo = lo>>5 | (top&31)<<59
		top >>= 5
	}
	return string(out[:])
}

// FirstActivationID returns the smallest id NewActivationID can make at t
// (its millisecond, random bits all zero): every id made at or after t sorts
// at or after it, every id made before t sorts before it. The controller
// removes activations older than its retention as the ids below
// FirstActivationID(now - retention). Times before 1970 give the id of 1970.
func FirstActivationID(t time.Time) string {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	var out [26]byte
	top := uint64(ms) << 16 // the 48-bit ms, then 16 zero bits; the low 64 bits are zero
	lo := uint64(0)
	for i := 25; i >= 0; i-- {
		out[i] = activationAlphabet[lo&31]
		lo = lo>>5 | (top&31)<<59
		top >>= 5
	}
	return string(out[:])
}

// ActivationTime returns the time encoded in an activation id, and false if
// id is not one.
func ActivationTime(id string) (time.Time, bool) {
	if len(id) != 26 {
		return time.Time{}, false
	}
	var ms uint64
	for i := 0; i < 10; i++ { // first 10 digits = 50 bits: 2 zero bits, then the 48-bit ms
		v := indexByte(id[i])
		if v < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(v)
	}
	for i := 10; i < 26; i++ {
		if indexByte(id[i]) < 0 {
			return time.Time{}, false
		}
	}
	return time.UnixMilli(int64(ms)), true
}

func indexByte(c byte) int {
	for i := 0; i < len(activationAlphabet); i++ {
		if activationAlphabet[i] == c {
			return i
		}
	}
	return -1
}
