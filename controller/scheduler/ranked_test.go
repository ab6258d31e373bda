package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// rankKey is what the default policy ranks a candidate by: two candidates
// with equal keys are equally good choices.
type rankKey struct {
	held, known bool
	free        uint64
	inFlight    uint64
	name, id    string
}

func keyOf(c *Candidate, capB uint64) rankKey {
	k := rankKey{held: c.HasDigest, known: c.MemKnown, inFlight: inFlight(c), name: c.Name, id: c.ID}
	if c.MemKnown {
		k.free = free(c, capB)
	}
	return k
}

// checkRanked runs PickRanked over cands sorted by Order, skipping those
// skip marks, and compares its choice with Pick's over the others.
func checkRanked(t *testing.T, cands []Candidate, skip []bool, fn Function) {
	t.Helper()
	type item struct {
		c    Candidate
		skip bool
	}
	items := make([]item, len(cands))
	var kept []Candidate
	for i := range cands {
		items[i] = item{cands[i], skip[i]}
		if !skip[i] {
			kept = append(kept, cands[i])
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return Order(&a.c, &b.c) })
	got, err := PickRanked(len(items), func(i int) (Candidate, bool) { return items[i].c, !items[i].skip }, fn)
	want, wantErr := Pick(kept, fn, nil, nil)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("PickRanked: %d, %v; Pick: %d, %v\ncands %+v\nskip %v\nfn %+v", got, err, want, wantErr, cands, skip, fn)
	}
	if err != nil {
		if !errors.Is(err, ErrNoWorker) || err.Error() != wantErr.Error() {
			t.Fatalf("PickRanked: %v; Pick: %v", err, wantErr)
		}
		return
	}
	if items[got].skip {
		t.Fatalf("PickRanked chose a skipped candidate %+v", items[got].c)
	}
	capB := fn.capacityBytes()
	if g, w := keyOf(&items[got].c, capB), keyOf(&kept[want], capB); g != w {
		t.Fatalf("PickRanked chose %+v (%+v), Pick %+v (%+v)\ncands %+v\nskip %v\nfn %+v", items[got].c, g, kept[want], w, cands, skip, fn)
	}
}

// FuzzPickRanked: PickRanked over candidates in Order chooses what Pick
// chooses (or one tied with it on every ranked field), with candidates
// skipped.
func FuzzPickRanked(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 1, 0, 1, 3, 3, 2, 0, 1, 2, 1, 4, 4, 0, 0, 1, 1, 2, 2, 1, 3, 1, 0, 0, 1, 1, 2, 7, 9, 1, 50, 1, 3})
	f.Add([]byte{9, 0, 0, 1, 6, 6, 4, 1, 1, 0, 1, 2, 5, 5, 2, 0, 3, 3, 1, 2, 2, 2, 1, 1, 1, 2, 0, 2, 2, 1, 2, 1, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 2, 3, 0, 1, 60, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &bytesource{b: data}
		cands := src.candidates()
		fn := src.function()
		skip := make([]bool, len(cands))
		for i := range skip {
			skip[i] = src.pick(5) == 0
		}
		checkRanked(t, cands, skip, fn)
	})
}

// TestPickRankedMatchesPick: the same comparison over larger random
// fleets shaped like real ones: many agents on few memory levels, code
// held by all, some or none, invocations in flight on a few.
func TestPickRankedMatchesPick(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for round := range 3000 {
		n := 1 + r.IntN(60)
		cands := make([]Candidate, n)
		skip := make([]bool, n)
		held := []int{0, 1, 2, 10}[r.IntN(4)] // none, all, half, a tenth
		for i := range cands {
			c := &cands[i]
			c.ID, c.Name = fmt.Sprintf("ag-%03d", i), fmt.Sprintf("edge-%02d", r.IntN(n))
			c.MemKnown = r.IntN(8) != 0
			if c.MemKnown {
				c.MemTotal = 1024 * MiB
				c.MemAvail = uint64(r.IntN(4)) * 256 * MiB
			}
			if r.IntN(3) == 0 {
				c.InFlight = r.IntN(4)
			}
			c.HasDigest = held == 1 || (held > 1 && r.IntN(held) == 0)
			skip[i] = r.IntN(10) == 0
		}
		fn := Function{Digest: "d", CapacityKiB: []uint64{0, 0, 64 * 1024, 256 * 1024, 2048 * 1024}[r.IntN(5)]}
		t.Run(fmt.Sprint(round), func(t *testing.T) { checkRanked(t, cands, skip, fn) })
		if t.Failed() {
			return
		}
	}
}

// TestPickRankedStopsEarly: over 10,000 agents holding the code, with
// equal memory and a few invocations in flight, PickRanked reads only the
// first few candidates; with the code held by none it reads them all.
func TestPickRankedStopsEarly(t *testing.T) {
	cands := make([]Candidate, 10000)
	for i := range cands {
		cands[i] = Candidate{ID: fmt.Sprintf("ag-%05d", i), Name: fmt.Sprintf("edge-%05d", i), MemKnown: true,
			MemTotal: 1024 * MiB, MemAvail: 512 * MiB, HasDigest: true}
	}
	for i := range 5 {
		cands[i].InFlight = 1
	}
	slices.SortFunc(cands, func(a, b Candidate) int { return Order(&a, &b) })
	for _, tc := range []struct {
		name     string
		capKiB   uint64
		held     bool
		maxReads int
		want     string
	}{
		{"no capacity", 0, true, 7, "edge-00005"},
		{"capacity", 64 * 1024, true, 7, "edge-00005"},
		{"held by none", 0, false, 10000, "edge-00005"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads := 0
			i, err := PickRanked(len(cands), func(i int) (Candidate, bool) {
				reads++
				c := cands[i]
				c.HasDigest = tc.held
				return c, true
			}, Function{CapacityKiB: tc.capKiB})
			if err != nil || cands[i].Name != tc.want {
				t.Fatalf("picked %d (%v), want %s", i, err, tc.want)
			}
			if reads > tc.maxReads {
				t.Fatalf("read %d candidates, want at most %d", reads, tc.maxReads)
			}
		})
	}
}
