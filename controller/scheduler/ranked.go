package scheduler

import (
	"cmp"
	"fmt"
	"strings"
)

// Order is the order [PickRanked] reads candidates in: agents with metrics
// first, by most MemAvail, then by Name, then by ID; then agents without
// metrics by Name, then by ID (their MemAvail means nothing to the policy).
// It reads only MemKnown, MemAvail, Name and ID: what changes with load
// reports, never with invocations.
func Order(a, b *Candidate) int {
	if a.MemKnown != b.MemKnown {
		if a.MemKnown {
			return -1
		}
		return 1
	}
	if a.MemKnown && a.MemAvail != b.MemAvail {
		if a.MemAvail > b.MemAvail {
			return -1
		}
		return 1
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// PickRanked applies the default policy (Pick with no script) to n
// candidates that at hands out in [Order], and returns the position of
// the one chosen. at(i) returns the i-th candidate and whether it is one
// (false: skip it, as if it were not in the slice: a disconnected,
// cordoned or excluded agent). It chooses what Pick would choose among the
// same candidates (an agent tied with it on every ranked field may stand
// in for it).
//
// # Cost
//
// It stops as soon as no later candidate can rank better: a later agent
// has no more MemAvail than the current one, and free memory never exceeds
// MemAvail. With the code held by many agents and few invocations in
// flight that is after a handful of candidates, whatever n; it reads every
// candidate when no valid one holds the code, when every agent's memory
// is taken by the invocations in flight (free memory 0 everywhere), or
// when every agent lacks metrics and has invocations in flight.
//
// # Errors
//
// ErrNoWorker, as Pick words it, when no candidate qualifies.
func PickRanked(n int, at func(i int) (Candidate, bool), fn Function) (int, error) {
	capB := fn.capacityBytes()
	// The best valid holder of the code, and the best valid agent, for
	// when no valid agent holds it (rule 2).
	held, any := -1, -1
	var heldC, anyC Candidate
	seen := 0
	for i := range n {
		c, ok := at(i)
		if !ok {
			continue
		}
		seen++
		if held >= 0 && !mayBeat(&c, &heldC, capB) {
			// c and everything after it rank below the best holder.
			return held, nil
		}
		if !valid(&c, capB, Invalidate{}) {
			continue
		}
		switch {
		case c.HasDigest:
			if held < 0 || better(&c, &heldC, capB) {
				held, heldC = i, c
			}
		case held < 0 && (any < 0 || better(&c, &anyC, capB)):
			any, anyC = i, c
		}
	}
	switch {
	case held >= 0:
		return held, nil
	case any >= 0:
		return any, nil
	case seen == 0:
		return -1, fmt.Errorf("%w: no agent is connected", ErrNoWorker)
	}
	return -1, fmt.Errorf("%w: none of %d agent(s) has room for the function", ErrNoWorker, seen)
}

// mayBeat reports whether c, or a candidate after it in Order, could rank
// before best (both holding the code, or neither). best came before c in
// Order and was valid.
func mayBeat(c, best *Candidate, capB uint64) bool {
	if best.MemKnown != c.MemKnown {
		return !best.MemKnown // Order puts the agents with metrics first
	}
	if !best.MemKnown {
		// Without metrics: fewer in flight, then Name, then ID. Later
		// agents come in (Name, ID) order, so only fewer in flight helps.
		return inFlight(best) > 0
	}
	// With metrics, free memory ranks first and never exceeds MemAvail,
	// which only falls from c on.
	bf := free(best, capB)
	switch {
	case c.MemAvail > bf:
		return true
	case c.MemAvail < bf:
		return false
	}
	// A later agent ties best's free memory only with nothing in flight
	// charged; it then ranks before best only with fewer in flight (best
	// has some), or with as few and a smaller (Name, ID), which needs best
	// to have more MemAvail than c (same MemAvail: best came first in
	// (Name, ID) order). best with nothing in flight has MemAvail == free
	// == c's MemAvail: neither holds.
	return inFlight(best) > 0
}
