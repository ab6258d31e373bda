// Package activationid makes and reads activation ids, the names of one
// invocation everywhere: in Invoke and Result frames, outbox entries,
// activation records and sink documents (the CouchDB _id), so a replay is
// recognised as the same activation.
//
// The wire protocol carries an id as an opaque string (package protocol);
// what an id looks like, and how one is made, is this package's business,
// shared by the controller (ids of dispatched calls, retention by age) and
// the agent (ids of local activations). Both binaries are built from this
// module, so they agree on the layout below.
//
// Layout (ULID-like, 26 characters of Crockford base32, sortable as text):
// 48 bits of Unix milliseconds, then 80 random bits. Ids made in the same
// millisecond by one process increase monotonically (the random part is
// incremented), so ids from one agent sort in the order they were made;
// ids from different agents never collide in practice (80 random bits).
//
// It imports only the standard library (internal/archtest).
package activationid

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// alphabet is Crockford's base32.
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idGen makes monotonic ids; the process shares one (gen).
type idGen struct {
	sync.Mutex
	lastMS uint64
	hi     uint16 // top 16 of the 80 random bits
	lo     uint64 // low 64
}

var gen idGen

// New returns a new id; now is usually time.Now().
func New(now time.Time) string { return gen.next(now) }

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
		out[i] = alphabet[lo&31]
		lo = lo>>5 | (top&31)<<59
		top >>= 5
	}
	return string(out[:])
}

// First returns the smallest id New can make at t
// (its millisecond, random bits all zero): every id made at or after t sorts
// at or after it, every id made before t sorts before it. The controller
// removes activations older than its retention as the ids below
// First(now - retention). Times before 1970 give the id of 1970.
func First(t time.Time) string {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	var out [26]byte
	top := uint64(ms) << 16 // the 48-bit ms, then 16 zero bits; the low 64 bits are zero
	lo := uint64(0)
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | (top&31)<<59
		top >>= 5
	}
	return string(out[:])
}

// Time returns the time encoded in an activation id, and false if id is not
// one.
func Time(id string) (time.Time, bool) {
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
	for i := 0; i < len(alphabet); i++ {
		if alphabet[i] == c {
			return i
		}
	}
	return -1
}
