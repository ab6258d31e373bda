package scheduler

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

const MiB = 1 << 20

// labelled is c with labels.
func labelled(c Candidate, labels ...string) Candidate {
	c.Labels = labels
	return c
}

// known is an agent with a heartbeat; memory in MiB.
func known(name string, totalMiB, availMiB uint64, inFlight int) Candidate {
	return Candidate{ID: "id-" + name, Name: name, MemTotal: totalMiB * MiB, MemAvail: availMiB * MiB, MemKnown: true, InFlight: inFlight}
}

// unknown is an agent without a heartbeat yet.
func unknown(name string, inFlight int) Candidate {
	return Candidate{ID: "id-" + name, Name: name, InFlight: inFlight}
}

func withDigest(c Candidate) Candidate { c.HasDigest = true; return c }

func fnMiB(tag string, capMiB uint64) Function {
	return Function{Digest: "sha256:f", Tag: tag, CapacityKiB: capMiB * 1024}
}

// script builds a Script from tags.
func script(tags ...Tag) *Script { return &Script{Tags: tags} }

func names(ws ...string) Block { return Block{Workers: ws, Strategy: StrategyBestFirst} }

func all(s Strategy) Block { return Block{AllWorkers: true, Strategy: s} }

func limit(b Block, capacityUsed, maxConc int) Block {
	b.Invalidate = Invalidate{CapacityUsed: capacityUsed, MaxConcurrentInvocations: maxConc}
	return b
}

func strategy(b Block, s Strategy) Block { b.Strategy = s; return b }

// fixed returns a rnd that always answers k (Pick reduces it into range)
// and records the n it was asked for.
func fixed(k int, asked *[]int) func(int) int {
	return func(n int) int {
		if asked != nil {
			*asked = append(*asked, n)
		}
		return k
	}
}

func (c choice) String() string {
	if c.block < 0 {
		return "policy"
	}
	return fmt.Sprintf("%s/%d", c.tag, c.block)
}

func TestPick(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cands  []Candidate
		fn     Function
		script *Script
		rnd    func(int) int
		want   int    // index, or -1 with err
		via    string // "policy" or "tag/block"; "" skips the check
		err    error
		errHas string
	}{
		// Default policy.
		{name: "empty cands", fn: fnMiB("", 1), want: -1, err: ErrNoWorker, errHas: "no agent is connected"},
		{name: "empty cands with script", fn: fnMiB("a", 1), script: script(Tag{Name: "a", Blocks: []Block{all("")}}), want: -1, err: ErrNoWorker},
		{name: "most available memory", cands: []Candidate{known("a", 4096, 1024, 0), known("b", 4096, 2048, 0)}, fn: fnMiB("", 128), want: 1, via: "policy"},
		{name: "capacity filter beats digest", cands: []Candidate{withDigest(known("a", 4096, 100, 0)), known("b", 4096, 200, 0)}, fn: fnMiB("", 128), want: 1},
		{name: "exact fit is valid", cands: []Candidate{known("a", 4096, 128, 0)}, fn: fnMiB("", 128), want: 0},
		{name: "none fits", cands: []Candidate{known("a", 4096, 127, 0), known("b", 64, 1, 0)}, fn: fnMiB("", 128), want: -1, err: ErrNoWorker, errHas: "none of 2 agent(s) has room"},
		{name: "digest preferred over memory", cands: []Candidate{known("a", 8192, 4096, 0), withDigest(known("b", 1024, 200, 0))}, fn: fnMiB("", 128), want: 1},
		{name: "digest holders ranked by memory", cands: []Candidate{withDigest(known("a", 8192, 300, 0)), known("b", 8192, 4096, 0), withDigest(known("c", 8192, 400, 0))}, fn: fnMiB("", 128), want: 2},
		{name: "in flight charged against memory", cands: []Candidate{known("a", 4096, 1024, 3), known("b", 4096, 800, 0)}, fn: fnMiB("", 256), want: 1},
		{name: "free saturates at zero then fewer in flight", cands: []Candidate{known("a", 4096, 100, 20), known("b", 4096, 100, 10)}, fn: fnMiB("", 64), want: 1},
		{name: "equal memory then fewer in flight", cands: []Candidate{known("a", 4096, 1024, 2), known("b", 4096, 1024, 1)}, fn: fnMiB("", 0), want: 1},
		{name: "full tie then name", cands: []Candidate{known("b", 4096, 1024, 0), known("a", 4096, 1024, 0)}, fn: fnMiB("", 64), want: 1},
		{name: "full tie then id", cands: []Candidate{{ID: "2", Name: "x", InFlight: 1}, {ID: "1", Name: "x", InFlight: 1}}, fn: fnMiB("", 64), want: 1},
		{name: "no metrics: fewest in flight", cands: []Candidate{unknown("a", 3), unknown("b", 1), unknown("c", 2)}, fn: fnMiB("", 64), want: 1},
		{name: "metrics beat no metrics", cands: []Candidate{unknown("a", 0), known("b", 4096, 64, 5)}, fn: fnMiB("", 64), want: 1},
		{name: "no metrics valid when the known are full", cands: []Candidate{known("a", 4096, 10, 0), unknown("b", 7)}, fn: fnMiB("", 64), want: 1},
		{name: "negative in flight counts as zero", cands: []Candidate{unknown("b", -3), unknown("a", 0)}, fn: fnMiB("", 64), want: 1},
		{name: "capacity overflow saturates", cands: []Candidate{known("a", 4096, 4096, 0), unknown("b", 0)}, fn: Function{CapacityKiB: math.MaxUint64}, want: 1},

		// Tag selection and followup.
		{name: "tag entry chosen", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 1, 0)}, fn: fnMiB("t", 0),
			script: script(Tag{Name: "default", Blocks: []Block{names("a")}}, Tag{Name: "t", Blocks: []Block{names("b")}}), want: 1, via: "t/0"},
		{name: "unknown tag falls to default tag", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("nope", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("a")}}, Tag{Name: "default", Blocks: []Block{names("b")}}), want: 1, via: "default/0"},
		{name: "empty tag uses default tag", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("", 1),
			script: script(Tag{Name: "default", Blocks: []Block{names("b")}}), want: 1, via: "default/0"},
		{name: "unknown tag and no default tag: default policy", cands: []Candidate{known("a", 4096, 100, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("nope", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("a")}}), want: 1, via: "policy"},
		{name: "unknown tag, no default tag, nothing fits", cands: []Candidate{known("a", 4096, 1, 0)}, fn: fnMiB("nope", 64),
			script: script(Tag{Name: "t", Blocks: []Block{names("a")}}), want: -1, err: ErrNoWorker, errHas: `no tag "nope" nor "default"`},
		{name: "blocks tried in order", cands: []Candidate{known("a", 4096, 10, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{names("a"), names("b")}}), want: 1, via: "t/1"},
		{name: "followup fail", cands: []Candidate{known("a", 4096, 10, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Followup: FollowupFail, Blocks: []Block{names("a")}}, Tag{Name: "default", Blocks: []Block{names("b")}}), want: -1, err: ErrNoWorker, errHas: `APP tag "t" found none among 1 block(s) (followup fail)`},
		{name: "empty followup is fail", cands: []Candidate{known("a", 4096, 10, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{names("a")}}), want: -1, err: ErrNoWorker, errHas: `"t"`},
		{name: "followup default uses default tag", cands: []Candidate{known("a", 4096, 10, 0), known("b", 4096, 4096, 0), known("c", 8192, 8192, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Followup: FollowupDefault, Blocks: []Block{names("a")}}, Tag{Name: "default", Blocks: []Block{names("b")}}), want: 1, via: "default/0"},
		{name: "followup default without default tag: default policy", cands: []Candidate{known("a", 4096, 10, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Followup: FollowupDefault, Blocks: []Block{names("a")}}), want: 1, via: "policy"},
		{name: "followup default, default tag fails too", cands: []Candidate{known("a", 4096, 10, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Followup: FollowupDefault, Blocks: []Block{names("a")}}, Tag{Name: "default", Blocks: []Block{names("ghost")}}), want: -1, err: ErrNoWorker, errHas: "nor did its followup"},
		{name: "default tag failing does not fall to the policy", cands: []Candidate{known("a", 4096, 4096, 0)}, fn: fnMiB("nope", 64),
			script: script(Tag{Name: "default", Blocks: []Block{names("ghost")}}), want: -1, err: ErrNoWorker, errHas: `APP tag "default"`},
		{name: "hand-built default followup default does not loop", cands: []Candidate{known("a", 4096, 4096, 0)}, fn: fnMiB("", 64),
			script: script(Tag{Name: "default", Followup: FollowupDefault, Blocks: []Block{names("ghost")}}), want: -1, err: ErrNoWorker},
		{name: "unknown strategy", cands: []Candidate{known("a", 4096, 4096, 0)}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{strategy(all(""), "fastest")}}), want: -1, err: ErrInvalidScript, errHas: `"fastest"`},
		{name: "unknown followup", cands: []Candidate{known("a", 4096, 1, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Followup: "maybe", Blocks: []Block{all("")}}), want: -1, err: ErrInvalidScript, errHas: `"maybe"`},

		// Workers.
		{name: "a label names every agent carrying it", cands: []Candidate{known("a", 4096, 4096, 0), labelled(known("b", 4096, 1024, 0), "zone=x"), labelled(known("c", 4096, 2048, 0), "zone=y", "zone=x")}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{strategy(names("zone=x"), StrategyPlatform)}}), want: 2, via: "t/0"},
		{name: "a label no agent carries", cands: []Candidate{labelled(known("a", 4096, 4096, 0), "zone=y")}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("zone=x")}}), want: -1, err: ErrNoWorker},
		{name: "an entry without = is never a label", cands: []Candidate{labelled(known("a", 4096, 4096, 0), "gpu")}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("gpu")}}), want: -1, err: ErrNoWorker},
		{name: "names not connected are skipped", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("ghost", "b")}}), want: 1, via: "t/0"},
		{name: "only names not connected", cands: []Candidate{known("a", 4096, 4096, 0)}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("ghost")}}), want: -1, err: ErrNoWorker},
		{name: "worker by id", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{names("id-b")}}), want: 1},
		{name: "star wins over names", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 1),
			script: script(Tag{Name: "t", Blocks: []Block{{AllWorkers: true, Workers: []string{"b"}, Strategy: StrategyBestFirst}}}), want: 0},

		// Strategies.
		{name: "best-first listed order", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 100, 0), known("c", 4096, 2000, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{names("c", "b", "a")}}), want: 2},
		{name: "best-first skips invalid", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 10, 0), known("c", 4096, 2000, 3)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("c", "b", "a"), 0, 3)}}), want: 0},
		{name: "best-first ignores digest", cands: []Candidate{withDigest(known("a", 4096, 4096, 0)), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{names("b", "a")}}), want: 1},
		{name: "best-first star by name", cands: []Candidate{known("z", 4096, 4096, 0), known("m", 4096, 4096, 0), known("b", 4096, 10, 0), known("c", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{all(StrategyBestFirst)}}), want: 3},
		{name: "empty strategy is best-first", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{strategy(names("b", "a"), "")}}), want: 1},
		{name: "random draws among valid", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 10, 0), known("c", 4096, 4096, 0), known("d", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{all(StrategyRandom)}}), rnd: fixed(1, nil), want: 2},
		{name: "random faulty rnd reduced", cands: []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{all(StrategyRandom)}}), rnd: fixed(-1, nil), want: 1},
		{name: "random nil rnd", cands: []Candidate{known("a", 4096, 10, 0), known("b", 4096, 4096, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{all(StrategyRandom)}}), want: 1},
		{name: "platform ranks the block only", cands: []Candidate{known("a", 4096, 1000, 0), known("b", 4096, 2000, 0), known("c", 8192, 8000, 0)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{strategy(names("a", "b"), StrategyPlatform)}}), want: 1},
		{name: "platform prefers digest", cands: []Candidate{known("a", 4096, 4000, 0), withDigest(known("b", 4096, 200, 0))}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{all(StrategyPlatform)}}), want: 1},

		// Invalidate.
		{name: "max concurrent reached", cands: []Candidate{known("a", 4096, 4096, 3), known("b", 4096, 100, 2)}, fn: fnMiB("t", 64),
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a", "b"), 0, 3)}}), want: 1},
		{name: "capacity used at the limit", cands: []Candidate{known("a", 1000, 600, 0)}, fn: fnMiB("t", 100), // (400+100)/1000 = 50%
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 50, 0)}}), want: 0},
		{name: "capacity used over the limit", cands: []Candidate{known("a", 1000, 600, 0)}, fn: Function{Tag: "t", CapacityKiB: 100*1024 + 1},
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 50, 0)}}), want: -1, err: ErrNoWorker},
		{name: "capacity used ignores no metrics", cands: []Candidate{unknown("a", 0)}, fn: fnMiB("t", 100),
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 1, 0)}}), want: 0},
		{name: "capacity used with avail over total", cands: []Candidate{known("a", 1000, 2000, 0)}, fn: fnMiB("t", 100), // 100/1000 = 10%
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 10, 0)}}), want: 0},
		{name: "capacity used with zero total", cands: []Candidate{{Name: "a", MemKnown: true}}, fn: Function{Tag: "t"},
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 100, 0)}}), want: 0},
		{name: "capacity used huge values exact", cands: []Candidate{{Name: "a", MemKnown: true, MemTotal: math.MaxUint64, MemAvail: math.MaxUint64 / 2}}, fn: Function{Tag: "t", CapacityKiB: 1},
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 50, 0)}}), want: -1, err: ErrNoWorker},
		{name: "capacity used falls to next block", cands: []Candidate{known("a", 1000, 250, 0), known("b", 1000, 900, 4)}, fn: fnMiB("t", 100),
			script: script(Tag{Name: "t", Blocks: []Block{limit(names("a"), 80, 0), limit(all(StrategyPlatform), 80, 5)}}), want: 1, via: "t/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]Candidate(nil), tc.cands...)
			got, err := Pick(tc.cands, tc.fn, tc.script, tc.rnd)
			if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Pick = %d, %v; want %d, %v", got, err, tc.want, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %q does not mention %q", err, tc.errHas)
			}
			if tc.via != "" {
				if c, _ := decide(tc.cands, tc.fn, tc.script, tc.rnd); c.String() != tc.via {
					t.Fatalf("decided by %s, want %s", c, tc.via)
				}
			}
			for i := range before {
				if !reflect.DeepEqual(before[i], tc.cands[i]) {
					t.Fatalf("Pick changed cands[%d]: %+v -> %+v", i, before[i], tc.cands[i])
				}
			}
		})
	}
}

// TestPickRandomCountsEachAgentOnce: an agent listed twice, or by name and
// by ID, is drawn with the same chance as the others.
func TestPickRandomCountsEachAgentOnce(t *testing.T) {
	cands := []Candidate{known("a", 4096, 4096, 0), known("b", 4096, 4096, 0), known("c", 4096, 4096, 0)}
	s := script(Tag{Name: "t", Blocks: []Block{strategy(names("a", "a", "id-a", "c"), StrategyRandom)}})
	var asked []int
	seen := map[int]bool{}
	for k := range 2 {
		i, err := Pick(cands, fnMiB("t", 1), s, fixed(k, &asked))
		if err != nil {
			t.Fatal(err)
		}
		seen[i] = true
	}
	if asked[0] != 2 || !seen[0] || !seen[2] {
		t.Fatalf("rnd asked for %v, picked %v; want n=2 over a and c", asked, seen)
	}
}

// TestPickSpreads: placing a burst on equal agents, counting each placement
// in InFlight as the controller does, spreads it evenly.
func TestPickSpreads(t *testing.T) {
	cands := []Candidate{known("a", 4096, 2048, 0), known("b", 4096, 2048, 0), known("c", 4096, 2048, 0)}
	for range 9 {
		i, err := Pick(cands, fnMiB("", 64), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cands[i].InFlight++
	}
	for _, c := range cands {
		if c.InFlight != 3 {
			t.Fatalf("burst not spread: %+v", cands)
		}
	}
}

// TestPickParsedScript runs a script through ParseAPP and Pick together.
func TestPickParsedScript(t *testing.T) {
	s, err := ParseAPP([]byte(`
- tag_a:
    - workers: [edge1, edge2]
      strategy: best-first
      invalidate: {capacity_used: 50%, max_concurrent_invocations: 3}
  followup: default
- default:
    - workers: "*"
      strategy: platform
`))
	if err != nil {
		t.Fatal(err)
	}
	cands := []Candidate{known("edge1", 1000, 400, 0), known("edge2", 1000, 900, 3), known("cloud", 8000, 7000, 0)}
	if i, err := Pick(cands, fnMiB("tag_a", 64), &s, nil); err != nil || i != 2 {
		t.Fatalf("Pick = %d, %v; want 2 (edge1 over 50%%, edge2 at max, followup default)", i, err)
	}
	cands[1].InFlight = 2
	if i, err := Pick(cands, fnMiB("tag_a", 64), &s, nil); err != nil || i != 1 {
		t.Fatalf("Pick = %d, %v; want 1", i, err)
	}
}
