package scheduler

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
)

// Candidate is the scheduler's view of one connected agent at decision time.
type Candidate struct {
	// ID is the agent's stable identifier; Name its operator-given name.
	// APP scripts name workers by Name, or by ID.
	ID, Name string
	// MemTotal and MemAvail are bytes from the agent's last heartbeat.
	// Both are 0, with MemKnown false, before the first heartbeat.
	MemTotal uint64
	MemAvail uint64
	MemKnown bool
	// InFlight is how many invocations the controller has running on the
	// agent now. Negative values count as 0.
	InFlight int
	// HasDigest says the agent already holds the function's code.
	HasDigest bool
	// Labels are the agent's "key=value" labels (its own, overridden by
	// the operator's). APP scripts name workers by label too.
	Labels []string
}

// IsWorker reports whether an APP block's worker entry w names the agent
// with id, name and labels: an entry is an agent name, an agent id, or,
// when it holds "=", a "key=value" label (every agent carrying it).
func IsWorker(w, id, name string, labels []string) bool {
	if w == "" {
		return false
	}
	return w == name || w == id || (strings.Contains(w, "=") && slices.Contains(labels, w))
}

// Function is what is being scheduled.
type Function struct {
	// Digest identifies the function's code; Pick reads only the
	// candidates' HasDigest, the caller fills it from this.
	Digest string
	// Tag is the function's metadata tag, "" when none.
	Tag string
	// CapacityKiB is the memory the function needs, in KiB (1024 bytes).
	// Wisp uses KiB everywhere; FunLess mixed KB and bytes.
	CapacityKiB uint64
}

// capacityBytes is fn's capacity in bytes, saturating at the largest uint64.
func (fn Function) capacityBytes() uint64 { return satMul(fn.CapacityKiB, 1024) }

// Pick returns the index in cands of the agent that should run fn.
//
// With script nil it applies the default policy; otherwise the APP script.
// rnd(n) must return an integer in [0, n); it is used only by the random
// strategy, and nil means math/rand/v2.IntN. Pick is pure: it reads cands,
// fn and script, never changes them, and does no I/O, so concurrent calls
// are safe when rnd is.
//
// # Default policy
//
//  1. Valid: MemAvail ≥ capacity, or no heartbeat yet (MemKnown false).
//  2. Among the valid, agents that hold the code (HasDigest) come first,
//     if any valid one does: fetching code costs more than memory saves.
//  3. Then agents with metrics before agents without: a known fit beats a
//     guess.
//  4. Then most free memory, free = MemAvail − InFlight × capacity
//     (saturating at 0). MemAvail is as old as the last heartbeat; the
//     subtraction charges the invocations placed since, so a burst spreads
//     over equal agents instead of piling onto the one that looked emptiest.
//     It may count an invocation twice (once in the heartbeat, once in
//     InFlight); as a ranking, not a filter, that errs towards spreading.
//  5. Then fewer InFlight, then Name, then ID: deterministic.
//
// When no agent has metrics, rules 3-4 do nothing and the agent with the
// fewest invocations in flight wins. No valid agent: ErrNoWorker.
//
// # APP scripts
//
// The tag entry is the one named fn.Tag, else the one named "default"; if
// neither exists Pick applies the default policy. The entry's blocks are
// tried in order and the first that yields an agent decides. A block's
// workers are the connected agents whose Name or ID it lists (names not in
// cands are skipped), or every agent for "*" ("*" wins if a list holds both
// names and "*"). A worker is valid when
//
//   - MemAvail ≥ capacity, or it has no metrics;
//   - max_concurrent_invocations is unset, or InFlight < it (a block with
//     max 3 accepts an agent running 2: the new one is the third);
//   - capacity_used is unset, or the agent has no metrics, or
//     (MemTotal − MemAvail + capacity) / MemTotal ≤ capacity_used/100,
//     computed exactly in integers (MemAvail > MemTotal counts as nothing
//     used). An agent reporting MemTotal 0 passes only a function that needs
//     no memory.
//
// Strategies: best-first takes the first valid worker in the block's listed
// order (an entry matching several agents: those in cands order; "*": by
// Name, then ID, then cands order) and ignores HasDigest — the list is the
// operator's preference. random draws uniformly among the valid workers,
// each agent once however often it is listed, enumerated in cands order.
// platform applies the default policy's ranking to the valid workers. An
// empty strategy is best-first and an empty followup is fail, as ParseAPP
// fills them; any other unknown value is an ErrInvalidScript error.
//
// When no block yields an agent, followup fail answers ErrNoWorker naming
// the tag; followup default tries the default tag's blocks, or the default
// policy if the script has no default tag. The default tag's own followup
// is never followed (ParseAPP rejects followup default on it): it fails, and
// so does a tag that fell back to it. A decision therefore runs at most two
// tags' blocks and never loops.
//
// # Cost
//
// One or two passes over cands, O(len(cands) × listed workers) for named
// blocks, and no allocations on success.
//
// # Errors
//
// ErrNoWorker, wrapped with which tag failed, when no agent qualifies;
// ErrInvalidScript for a hand-built Script with an unknown strategy or
// followup.
func Pick(cands []Candidate, fn Function, script *Script, rnd func(n int) int) (int, error) {
	c, err := decide(cands, fn, script, rnd)
	return c.index, err
}

// choice is a decision and what made it, for tests and logs.
type choice struct {
	index int
	tag   string // "" when the default policy decided
	block int    // index in the tag's blocks; -1 for the default policy
}

// defaultBlock expresses the default policy as a block: every agent, no
// limits beyond memory, ranked by the platform strategy.
var defaultBlock = Block{AllWorkers: true, Strategy: StrategyPlatform}

func decide(cands []Candidate, fn Function, script *Script, rnd func(n int) int) (choice, error) {
	none := choice{index: -1, block: -1}
	if len(cands) == 0 {
		return none, fmt.Errorf("%w: no agent is connected", ErrNoWorker)
	}
	capB := fn.capacityBytes()
	if script == nil {
		return defaultPolicy(cands, capB, func() string { return "" })
	}
	tag, ok := Tag{}, false
	if fn.Tag != "" {
		tag, ok = script.Tag(fn.Tag)
	}
	if !ok {
		tag, ok = script.Tag(DefaultTag)
	}
	if !ok {
		return defaultPolicy(cands, capB, func() string {
			return fmt.Sprintf(" (the APP script has no tag %q nor %q)", fn.Tag, DefaultTag)
		})
	}
	c, err := runTag(cands, capB, tag, rnd)
	if err != nil || c.index >= 0 {
		return c, err
	}
	switch tag.Followup {
	case FollowupFail, "":
	case FollowupDefault:
		if tag.Name == DefaultTag {
			break // never loops; see Pick
		}
		def, ok := script.Tag(DefaultTag)
		if !ok {
			return defaultPolicy(cands, capB, func() string {
				return fmt.Sprintf(" (after APP tag %q found none, followup default, no default tag)", tag.Name)
			})
		}
		c, err := runTag(cands, capB, def, rnd)
		if err != nil || c.index >= 0 {
			return c, err
		}
		return none, fmt.Errorf("%w: APP tag %q found none among %d block(s), nor did its followup, the default tag", ErrNoWorker, tag.Name, len(tag.Blocks))
	default:
		return none, fmt.Errorf("%w: APP tag %q: unknown followup %q", ErrInvalidScript, tag.Name, tag.Followup)
	}
	return none, fmt.Errorf("%w: APP tag %q found none among %d block(s) (followup fail)", ErrNoWorker, tag.Name, len(tag.Blocks))
}

// defaultPolicy applies the default policy to every agent; why, called only
// on failure, says how the decision got there.
func defaultPolicy(cands []Candidate, capB uint64, why func() string) (choice, error) {
	i := platform(cands, capB, &defaultBlock)
	if i < 0 {
		return choice{index: -1, block: -1}, fmt.Errorf("%w: none of %d agent(s) has room for the function%s", ErrNoWorker, len(cands), why())
	}
	return choice{index: i, block: -1}, nil
}

// runTag tries tag's blocks in order; index -1 when none yields an agent.
func runTag(cands []Candidate, capB uint64, tag Tag, rnd func(n int) int) (choice, error) {
	for bi := range tag.Blocks {
		b := &tag.Blocks[bi]
		var i int
		switch b.Strategy {
		case StrategyBestFirst, "":
			i = bestFirst(cands, capB, b)
		case StrategyRandom:
			i = random(cands, capB, b, rnd)
		case StrategyPlatform:
			i = platform(cands, capB, b)
		default:
			return choice{index: -1, block: -1}, fmt.Errorf("%w: APP tag %q block %d: unknown strategy %q", ErrInvalidScript, tag.Name, bi+1, b.Strategy)
		}
		if i >= 0 {
			return choice{index: i, tag: tag.Name, block: bi}, nil
		}
	}
	return choice{index: -1, block: -1}, nil
}

func bestFirst(cands []Candidate, capB uint64, b *Block) int {
	if b.AllWorkers {
		best := -1
		for i := range cands {
			c := &cands[i]
			if !valid(c, capB, b.Invalidate) {
				continue
			}
			if best < 0 || c.Name < cands[best].Name || (c.Name == cands[best].Name && c.ID < cands[best].ID) {
				best = i
			}
		}
		return best
	}
	for _, w := range b.Workers {
		if w == "" {
			continue
		}
		for i := range cands {
			c := &cands[i]
			if IsWorker(w, c.ID, c.Name, c.Labels) && valid(c, capB, b.Invalidate) {
				return i
			}
		}
	}
	return -1
}

func random(cands []Candidate, capB uint64, b *Block, rnd func(n int) int) int {
	n := 0
	for i := range cands {
		if eligible(&cands[i], capB, b) {
			n++
		}
	}
	if n == 0 {
		return -1
	}
	if rnd == nil {
		rnd = rand.IntN
	}
	k := rnd(n)
	if k < 0 || k >= n { // a faulty rnd must not make Pick panic
		k = (k%n + n) % n
	}
	for i := range cands {
		if eligible(&cands[i], capB, b) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1 // unreachable: cands did not change between the passes
}

func platform(cands []Candidate, capB uint64, b *Block) int {
	best := -1
	for i := range cands {
		c := &cands[i]
		// Membership, the costly test for named blocks, last: best is
		// always a member, so a candidate that does not beat it is out.
		if valid(c, capB, b.Invalidate) && (best < 0 || better(c, &cands[best], capB)) && member(c, b) {
			best = i
		}
	}
	return best
}

// eligible reports whether c is one of b's workers and valid for it.
func eligible(c *Candidate, capB uint64, b *Block) bool {
	return member(c, b) && valid(c, capB, b.Invalidate)
}

func member(c *Candidate, b *Block) bool {
	if b.AllWorkers {
		return true
	}
	for _, w := range b.Workers {
		if IsWorker(w, c.ID, c.Name, c.Labels) {
			return true
		}
	}
	return false
}

// valid applies the memory check and a block's invalidate rules to c.
// Non-positive limits are no limits, like the zero values.
func valid(c *Candidate, capB uint64, inv Invalidate) bool {
	if c.MemKnown && c.MemAvail < capB {
		return false
	}
	if inv.MaxConcurrentInvocations > 0 && c.InFlight >= inv.MaxConcurrentInvocations {
		return false
	}
	if inv.CapacityUsed > 0 && c.MemKnown {
		var used uint64
		if c.MemTotal > c.MemAvail {
			used = c.MemTotal - c.MemAvail
		}
		// (used + capB) × 100 ≤ CapacityUsed × MemTotal, in 129 bits.
		sum, carry := bits.Add64(used, capB, 0)
		lhsHi, lhsLo := bits.Mul64(sum, 100)
		lhsHi += carry * 100
		rhsHi, rhsLo := bits.Mul64(uint64(inv.CapacityUsed), c.MemTotal)
		if lhsHi > rhsHi || (lhsHi == rhsHi && lhsLo > rhsLo) {
			return false
		}
	}
	return true
}

// better reports whether a ranks before b under the default policy.
func better(a, b *Candidate, capB uint64) bool {
	if a.HasDigest != b.HasDigest {
		return a.HasDigest
	}
	if a.MemKnown != b.MemKnown {
		return a.MemKnown
	}
	if a.MemKnown {
		if fa, fb := free(a, capB), free(b, capB); fa != fb {
			return fa > fb
		}
	}
	if ia, ib := inFlight(a), inFlight(b); ia != ib {
		return ia < ib
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.ID < b.ID
}

// free is MemAvail minus the memory of the invocations in flight, at least 0.
func free(c *Candidate, capB uint64) uint64 {
	load := satMul(inFlight(c), capB)
	if load >= c.MemAvail {
		return 0
	}
	return c.MemAvail - load
}

func inFlight(c *Candidate) uint64 {
	if c.InFlight < 0 {
		return 0
	}
	return uint64(c.InFlight)
}

func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}
