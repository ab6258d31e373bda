package runtime

import (
	"bytes"
	"testing"
)

// TestPageLevelReset: a region's reset clears exactly the pages a guest
// touched, found in the page map, and leaves the region all zero; a region
// mostly touched becomes dense and is then cleared without the page map.
func TestPageLevelReset(t *testing.T) {
	var p memoryPool
	defer p.drain()
	if p.pages.open() < 0 {
		// qemu-user, for one: resets then clear whole regions.
		t.Skip("/proc/self/pagemap cannot be read here, or failed its self-test")
	}
	r := p.get(2<<20, false)
	if !r.mapped || len(r.b) != 2<<20 {
		t.Fatalf("region: mapped %v, %d bytes", r.mapped, len(r.b))
	}
	ps := hostPageSize
	used := 1<<20 + 64<<10 // a Rust guest's 17 pages
	for _, off := range []int{0, 5*ps + 7, 100 * ps, used - 1} {
		r.b[off] = 0xAB
	}
	touched, ok := p.pages.clearTouched(r.b[:used])
	if !ok || touched != 4 {
		t.Fatalf("clearTouched found %d touched pages (ok %v), want 4", touched, ok)
	}
	if !bytes.Equal(r.b, make([]byte, len(r.b))) {
		t.Fatal("a touched page was not cleared")
	}
	// Touch most of it: the reset marks it dense.
	for off := 0; off < used*3/4; off += ps {
		r.b[off] = 1
	}
	if p.put(r, uint64(used)) != true || !r.dense {
		t.Fatal("a region three quarters touched is not dense")
	}
	if !bytes.Equal(r.b, make([]byte, len(r.b))) {
		t.Fatal("the dense region was not cleared")
	}
	if got := p.get(2<<20, true); got != r {
		t.Fatal("a dense region is not handed to a dense module")
	}
}
