package scheduler

import (
	"cmp"
	"errors"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// bytesource hands out fuzz bytes; past the end it answers 0.
type bytesource struct{ b []byte }

func (s *bytesource) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	v := s.b[0]
	s.b = s.b[1:]
	return v
}

func (s *bytesource) pick(n int) int { return int(s.next()) % n }

func (s *bytesource) u64() uint64 {
	var v uint64
	for range 8 {
		v = v<<8 | uint64(s.next())
	}
	return v
}

var fuzzNames = []string{"a", "b", "c", "d", "id-a", "id-b", "ghost", "", "zone=x", "zone=y"}

var fuzzLabels = [][]string{nil, {"zone=x"}, {"zone=y"}, {"zone=y", "zone=x"}}

func (s *bytesource) mem() uint64 {
	switch s.pick(8) {
	case 0:
		return 0
	case 1:
		return MiB
	case 2:
		return 512 * MiB
	case 3:
		return 1024 * MiB
	case 4:
		return math.MaxUint64
	case 5:
		return uint64(s.next()) * 64 * MiB
	default:
		return s.u64()
	}
}

func (s *bytesource) candidates() []Candidate {
	cands := make([]Candidate, s.pick(10))
	for i := range cands {
		c := &cands[i]
		c.Name = fuzzNames[s.pick(5)]
		c.ID = "id-" + fuzzNames[s.pick(4)]
		c.MemKnown = s.next()&1 == 1
		if c.MemKnown {
			c.MemTotal, c.MemAvail = s.mem(), s.mem()
		}
		c.InFlight = int(int8(s.next())) % 7
		c.HasDigest = s.next()&1 == 1
		c.Labels = fuzzLabels[s.pick(len(fuzzLabels))]
	}
	return cands
}

func (s *bytesource) function() Function {
	caps := []uint64{0, 1, 1024, 64 * 1024, 256 * 1024, 1 << 20, math.MaxUint64, uint64(s.next()) << 12}
	tags := []string{"", "t", "u", DefaultTag, "nope"}
	return Function{Digest: "d", Tag: tags[s.pick(len(tags))], CapacityKiB: caps[s.pick(len(caps))]}
}

func (s *bytesource) script() *Script {
	if s.pick(4) == 0 {
		return nil
	}
	tagNames := []string{"t", "u", DefaultTag}
	strategies := []Strategy{StrategyBestFirst, StrategyRandom, StrategyPlatform, "", StrategyBestFirst, StrategyRandom, StrategyPlatform, "bogus"}
	followups := []Followup{FollowupFail, FollowupDefault, "", FollowupDefault, FollowupFail, FollowupDefault, FollowupFail, "bogus"}
	sc := &Script{}
	for range 1 + s.pick(3) {
		tag := Tag{Name: tagNames[s.pick(len(tagNames))], Followup: followups[s.pick(len(followups))]}
		for range s.pick(4) {
			b := Block{Strategy: strategies[s.pick(len(strategies))], AllWorkers: s.pick(3) == 0}
			for range s.pick(4) {
				b.Workers = append(b.Workers, fuzzNames[s.pick(len(fuzzNames))])
			}
			if s.next()&1 == 1 {
				b.Invalidate.CapacityUsed = int(int8(s.next())) % 120
			}
			if s.next()&1 == 1 {
				b.Invalidate.MaxConcurrentInvocations = int(int8(s.next())) % 6
			}
			tag.Blocks = append(tag.Blocks, b)
		}
		sc.Tags = append(sc.Tags, tag)
	}
	return sc
}

// replay is a rnd answering the same sequence each time it is rebuilt,
// sometimes out of range, so Pick and the reference draw alike.
func replay(seq []byte) func() func(int) int {
	return func() func(int) int {
		i := 0
		return func(n int) int {
			if len(seq) == 0 {
				return 0
			}
			v := int(int8(seq[i%len(seq)]))
			i++
			return v
		}
	}
}

// FuzzPick builds random candidates, functions and hand-made scripts (with
// values ParseAPP would reject) and checks Pick against the invariants and
// against refPick, a slow reference written independently.
func FuzzPick(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{5, 1, 0, 1, 3, 3, 2, 0, 1, 2, 1, 4, 4, 0, 0, 1, 1, 2, 2, 1, 3, 1, 0, 0, 1, 1, 2, 7, 9, 1, 50, 1, 3}, []byte{3, 255, 7})
	f.Add([]byte{9, 0, 0, 1, 6, 6, 4, 1, 1, 0, 1, 2, 5, 5, 2, 0, 3, 3, 1, 2, 2, 2, 1, 1, 1, 2, 0, 2, 2, 1, 2, 1, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 2, 3, 0, 1, 60, 1, 2}, []byte{1})
	f.Fuzz(func(t *testing.T, data, draws []byte) {
		src := &bytesource{b: data}
		cands := src.candidates()
		fn := src.function()
		sc := src.script()
		rnd := replay(draws)
		before := slices.Clone(cands)

		c, err := decide(cands, fn, sc, rnd())
		if !slices.EqualFunc(before, cands, func(a, b Candidate) bool { return reflect.DeepEqual(a, b) }) {
			t.Fatal("Pick changed cands")
		}
		if i, err2 := Pick(cands, fn, sc, rnd()); i != c.index || (err == nil) != (err2 == nil) {
			t.Fatalf("Pick = %d, %v; decide = %d, %v", i, err2, c.index, err)
		}
		capB := satMul(fn.CapacityKiB, 1024)
		if err != nil {
			if c.index != -1 || !(errors.Is(err, ErrNoWorker) || errors.Is(err, ErrInvalidScript)) {
				t.Fatalf("error %v with index %d", err, c.index)
			}
		} else {
			if c.index < 0 || c.index >= len(cands) {
				t.Fatalf("index %d out of range [0,%d)", c.index, len(cands))
			}
			got := &cands[c.index]
			if got.MemKnown && got.MemAvail < capB {
				t.Fatalf("picked %+v without room for %d bytes", *got, capB)
			}
			if c.block >= 0 {
				tag, ok := sc.Tag(c.tag)
				if !ok || c.block >= len(tag.Blocks) {
					t.Fatalf("decided by %s, not in the script", c)
				}
				b := tag.Blocks[c.block]
				if !refMember(got, b) || !refValid(got, capB, b.Invalidate) {
					t.Fatalf("picked %+v, not a valid worker of block %s %+v", *got, c, b)
				}
			}
		}
		want, wantErr := refPick(cands, fn, sc, rnd())
		if want != c.index || (wantErr == nil) != (err == nil) || (err != nil && !errors.Is(err, wantErr)) {
			t.Fatalf("Pick = %d, %v (by %s); reference = %d, %v\ncands %+v\nfn %+v\nscript %+v", c.index, err, c, want, wantErr, cands, fn, sc)
		}
	})
}

// refPick restates Pick's documentation as plainly as possible: sorting,
// big integers, allocations welcome.
func refPick(cands []Candidate, fn Function, sc *Script, rnd func(int) int) (int, error) {
	if len(cands) == 0 {
		return -1, ErrNoWorker
	}
	capKiB := new(big.Int).SetUint64(fn.CapacityKiB)
	capB := new(big.Int).Mul(capKiB, big.NewInt(1024))
	if capB.Cmp(new(big.Int).SetUint64(math.MaxUint64)) > 0 {
		capB.SetUint64(math.MaxUint64)
	}
	cb := capB.Uint64()
	policy := func() (int, error) {
		if i := refPlatform(cands, cb, Block{AllWorkers: true}); i >= 0 {
			return i, nil
		}
		return -1, ErrNoWorker
	}
	if sc == nil {
		return policy()
	}
	find := func(name string) (Tag, bool) {
		for _, tg := range sc.Tags {
			if tg.Name == name {
				return tg, true
			}
		}
		return Tag{}, false
	}
	tag, ok := Tag{}, false
	if fn.Tag != "" {
		tag, ok = find(fn.Tag)
	}
	if !ok {
		tag, ok = find(DefaultTag)
	}
	if !ok {
		return policy()
	}
	run := func(tg Tag) (int, error) {
		for _, b := range tg.Blocks {
			var ws []int
			for i := range cands {
				if refMember(&cands[i], b) && refValid(&cands[i], cb, b.Invalidate) {
					ws = append(ws, i)
				}
			}
			switch b.Strategy {
			case StrategyBestFirst, "":
				if len(ws) == 0 {
					continue
				}
				if b.AllWorkers {
					slices.SortStableFunc(ws, func(x, y int) int {
						return cmp.Or(cmp.Compare(cands[x].Name, cands[y].Name), cmp.Compare(cands[x].ID, cands[y].ID))
					})
					return ws[0], nil
				}
				for _, w := range b.Workers {
					for _, i := range ws {
						if refIsWorker(w, &cands[i]) {
							return i, nil
						}
					}
				}
			case StrategyRandom:
				if len(ws) == 0 {
					continue
				}
				k := rnd(len(ws)) % len(ws)
				if k < 0 {
					k += len(ws)
				}
				return ws[k], nil
			case StrategyPlatform:
				if i := refPlatform(cands, cb, b); i >= 0 {
					return i, nil
				}
			default:
				return -1, ErrInvalidScript
			}
		}
		return -1, nil
	}
	i, err := run(tag)
	if err != nil || i >= 0 {
		return i, err
	}
	switch tag.Followup {
	case FollowupFail, "":
		return -1, ErrNoWorker
	case FollowupDefault:
		if tag.Name == DefaultTag {
			return -1, ErrNoWorker
		}
		def, ok := find(DefaultTag)
		if !ok {
			return policy()
		}
		i, err := run(def)
		if err != nil || i >= 0 {
			return i, err
		}
		return -1, ErrNoWorker
	}
	return -1, ErrInvalidScript
}

func refMember(c *Candidate, b Block) bool {
	return b.AllWorkers || slices.ContainsFunc(b.Workers, func(w string) bool { return refIsWorker(w, c) })
}

func refValid(c *Candidate, capB uint64, inv Invalidate) bool {
	if c.MemKnown && c.MemAvail < capB {
		return false
	}
	if inv.MaxConcurrentInvocations > 0 && c.InFlight >= inv.MaxConcurrentInvocations {
		return false
	}
	if inv.CapacityUsed > 0 && c.MemKnown {
		used := new(big.Int).Sub(new(big.Int).SetUint64(c.MemTotal), new(big.Int).SetUint64(c.MemAvail))
		if used.Sign() < 0 {
			used.SetInt64(0)
		}
		used.Add(used, new(big.Int).SetUint64(capB))
		lhs := used.Mul(used, big.NewInt(100))
		rhs := new(big.Int).Mul(big.NewInt(int64(inv.CapacityUsed)), new(big.Int).SetUint64(c.MemTotal))
		return lhs.Cmp(rhs) <= 0
	}
	return true
}

// refPlatform sorts the block's valid workers by the default policy's keys.
func refPlatform(cands []Candidate, capB uint64, b Block) int {
	var ws []int
	for i := range cands {
		if refMember(&cands[i], b) && refValid(&cands[i], capB, b.Invalidate) {
			ws = append(ws, i)
		}
	}
	if len(ws) == 0 {
		return -1
	}
	flight := func(c Candidate) int64 { return max(int64(c.InFlight), 0) }
	freeMem := func(c Candidate) *big.Int {
		f := new(big.Int).Mul(big.NewInt(flight(c)), new(big.Int).SetUint64(capB))
		f.Sub(new(big.Int).SetUint64(c.MemAvail), f)
		if f.Sign() < 0 {
			f.SetInt64(0)
		}
		return f
	}
	boolRank := func(v bool) int {
		if v {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(ws, func(x, y int) int {
		a, b := cands[x], cands[y]
		free := 0
		if a.MemKnown && b.MemKnown {
			free = freeMem(b).Cmp(freeMem(a)) // more free first
		}
		return cmp.Or(
			cmp.Compare(boolRank(a.HasDigest), boolRank(b.HasDigest)),
			cmp.Compare(boolRank(a.MemKnown), boolRank(b.MemKnown)),
			free,
			cmp.Compare(flight(a), flight(b)),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.ID, b.ID),
		)
	})
	return ws[0]
}

// refIsWorker is IsWorker written out: a name, an id, or a label.
func refIsWorker(w string, c *Candidate) bool {
	if w == "" {
		return false
	}
	if w == c.Name || w == c.ID {
		return true
	}
	for _, l := range c.Labels {
		if strings.ContainsRune(w, '=') && l == w {
			return true
		}
	}
	return false
}
