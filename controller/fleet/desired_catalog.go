package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// Desired-set deltas (issue 16, point 7). A change of one function used
// to send every agent its whole set, made from every function; now the
// fleet keeps the desired form of every function in memory (the catalog),
// learns what a sync changed by comparing the listed functions with it,
// and sends each agent only the functions that changed for it.
//
// Naming a set. A desired function's hash is the sha256 of its encoding
// (secrets included); a set's digest is setDigestBase plus the hashes of
// its functions, added as 256-bit numbers (mod 2^256). Adding and taking
// out one function's hash is O(1), so a session keeps its set's digest
// without keeping the set, and every controller computing the same set
// from the one store names it the same. The sum is not a cryptographic
// commitment to the set: a collision needs someone to craft thousands of
// functions whose hashes sum alike (a generalized-birthday search), and
// all it could do is make one delta apply to a set it was not made for,
// until the agent's next full set (every reconnection). It is a consistency
// check between controllers and agents, not a defence against the API's
// own users, who can change those functions anyway.
//
// Versioning. A session remembers the digest of what it sent (sentDigest)
// and the catalog generation that was made from (sentCat). A DesiredDelta
// carries that digest as its base and the new one as its result; the agent
// applies it only to a stored set of that digest (agent/state.ApplyDesired),
// skips it when it holds the result already (another controller sent the
// same change), and otherwise asks for the full set (Heartbeat
// DesiredResync), which this controller sends from a fresh read. A full set
// goes instead of a delta when the session has sent none (a new
// connection: every reconnection starts with a full set), when its agent
// speaks a version before 5, when the assignment inputs changed (APP
// scripts, the cluster's tags, the agent's labels: they may move any
// function), when the catalog's log no longer reaches back to the
// session's generation (catalogLog), or when the delta would be larger
// than MaxDeltaFunctions.

// setDigestBase is the digest of the empty set: not zero, which names no
// set on the wire.
var setDigestBase = protocol.SetDigest(sha256.Sum256([]byte("wisp desired set")))

// addDigest returns a+b (sub: a-b), as 256-bit big-endian numbers.
func addDigest(a, b protocol.SetDigest, sub bool) protocol.SetDigest {
	var out protocol.SetDigest
	var carry uint64
	for i := 24; i >= 0; i -= 8 {
		x, y := binary.BigEndian.Uint64(a[i:]), binary.BigEndian.Uint64(b[i:])
		var r uint64
		if sub {
			r, carry = bits.Sub64(x, y, carry)
		} else {
			r, carry = bits.Add64(x, y, carry)
		}
		binary.BigEndian.PutUint64(out[i:], r)
	}
	return out
}

// desiredEntry is one function in the form every agent it is assigned to
// holds it. Entries are never modified once built: a change makes a new
// one, so sessions may read them without locking.
type desiredEntry struct {
	key  string // "module/name"
	fn   store.Function
	df   protocol.DesiredFunction
	hash protocol.SetDigest
	// unreadable: its secrets cannot be opened now; no set or delta that
	// holds it is sent (the agent keeps its last one).
	unreadable bool
}

// fnStamp is what tells that a listed function changed since its entry
// was built: the store rewrites Updated (and the digest) on every
// change of the record. A function with secrets is rebuilt at every sync
// (their values change without the record), as it was before deltas.
type fnStamp struct {
	digest           string
	created, updated int64 // Unix nanoseconds
	unreadable       bool
}

func stampOf(fn store.Function) fnStamp {
	return fnStamp{fn.Digest, fn.Created.UnixNano(), fn.Updated.UnixNano(), fn.Unreadable != nil}
}

// desiredChange is one function's change from one catalog generation to
// the next; old or new is nil where the function was absent.
type desiredChange struct {
	gen      uint64
	old, new *desiredEntry
}

// catalogLog bounds the changes the catalog remembers: a session further
// behind gets a full set.
const catalogLog = 8192

// catalogRebuild is how often the catalog is made again from whole reads
// (every function's kept versions), which also catches what no record
// change shows (versions pruned).
const catalogRebuild = 30 * time.Second

// desiredCatalog is every function's desiredEntry, with the recent
// changes. desiredInputs updates it under Fleet.catalogMu.
type desiredCatalog struct {
	gen   uint64
	items map[fnKey]catalogItem
	log   []desiredChange // oldest first; appended, trimmed by copying
	built time.Time
	// used counts, per digest, the entries naming it as code or kept code
	// (usedMu: read by syncs while the next refresh runs).
	usedMu sync.Mutex
	used   map[string]int
}

// uses reports whether some function names d as its code or kept code.
func (c *desiredCatalog) uses(d string) bool {
	c.usedMu.Lock()
	defer c.usedMu.Unlock()
	return c.used[d] > 0
}

// VersionLister is a store that lists one function's versions, newest
// first; the catalog reads only the changed functions' kept code with it.
type VersionLister interface {
	FunctionVersions(ctx context.Context, module, name string) ([]store.FunctionVersion, error)
}

// keptOf is one function's KeepDigests (as KeptDigests gives them), read
// alone. A store without versions gives none.
func (f *Fleet) keptOf(ctx context.Context, fn store.Function) []string {
	vl, ok := f.cfg.Store.(VersionLister)
	if !ok {
		return nil
	}
	vs, err := vl.FunctionVersions(ctx, fn.Module, fn.Name)
	if err != nil {
		f.log.Warn("reading a function's kept versions for the desired sets", "module", fn.Module, "function", fn.Name, "err", err)
		return nil
	}
	var keep []string
	for _, v := range vs {
		if len(keep) == MaxKeepDigests {
			break
		}
		if v.Digest != fn.Digest && !slices.Contains(keep, v.Digest) {
			keep = append(keep, v.Digest)
		}
	}
	return keep
}

// entryOf builds fn's entry with its kept code, opening its secrets.
func (f *Fleet) entryOf(ctx context.Context, fn store.Function, kept []string) *desiredEntry {
	e := &desiredEntry{key: fn.Module + "/" + fn.Name, fn: fn}
	var secrets []protocol.Secret
	if len(fn.Spec.Config.Secrets) > 0 {
		vals, err := f.secretValues(ctx, fn.Module, fn.Spec.Config.Secrets)
		if err != nil {
			f.log.Warn("the desired sets go without a function's secrets", "module", fn.Module, "function", fn.Name, "err", err)
			e.unreadable = true
		}
		secrets = vals
	}
	e.df = protocol.DesiredFunction{Module: fn.Module, Name: fn.Name, Digest: fn.Digest,
		LocalTopics: fnspec.LocalTopics(fn.Spec.Events), Env: configEnv(fn.Spec.Config), AllowHosts: f.allowHosts(fn.Spec.Config),
		Timers: localTimers(fn.Spec.Events), KeepDigests: kept, Secrets: secrets}
	e.hash = sha256.Sum256(e.df.Append(nil))
	return e
}

// refresh brings the catalog to fns (the store's functions, as listed):
// entries are rebuilt only for functions whose record changed (or that
// name secrets), unless the catalog is due to be made again whole. It
// returns the entries in fns's order. Changes are logged under a new
// generation when there are some.
func (f *Fleet) refreshCatalog(ctx context.Context, c *desiredCatalog, fns []store.Function) []*desiredEntry {
	var kept map[string][]string
	whole := c.items == nil || time.Since(c.built) >= catalogRebuild
	if whole {
		kept = f.keptDigests(ctx)
		if c.items == nil {
			c.items = map[fnKey]catalogItem{}
			c.usedMu.Lock()
			c.used = map[string]int{}
			c.usedMu.Unlock()
		}
		c.built = time.Now()
	}
	gen := c.gen + 1
	changed := false
	change := func(old, new *desiredEntry) {
		changed = true
		c.log = append(c.log, desiredChange{gen: gen, old: old, new: new})
		c.usedMu.Lock()
		defer c.usedMu.Unlock()
		for _, e := range []*desiredEntry{old, new} {
			if e == nil {
				continue
			}
			n := 1
			if e == old {
				n = -1
			}
			for _, d := range append([]string{e.df.Digest}, e.df.KeepDigests...) {
				if c.used[d] += n; c.used[d] <= 0 {
					delete(c.used, d)
				}
			}
		}
	}
	entries := make([]*desiredEntry, len(fns))
	seen := 0
	for i, fn := range fns {
		key := fnKey{fn.Module, fn.Name}
		it, found := c.items[key]
		if found {
			seen++
		}
		st := stampOf(fn)
		if found && !whole && it.stamp == st && len(fn.Spec.Config.Secrets) == 0 {
			entries[i] = it.entry
			continue
		}
		var k []string
		if whole {
			k = kept[fn.Module+"/"+fn.Name]
		} else {
			k = f.keptOf(ctx, fn)
		}
		e := f.entryOf(ctx, fn, k)
		if found && it.entry.hash == e.hash && it.entry.unreadable == e.unreadable {
			c.items[key] = catalogItem{it.entry, st}
			entries[i] = it.entry
			continue
		}
		c.items[key] = catalogItem{e, st}
		entries[i] = e
		change(it.entry, e)
	}
	if seen < len(c.items) { // some are gone
		listed := make(map[fnKey]bool, len(fns))
		for _, fn := range fns {
			listed[fnKey{fn.Module, fn.Name}] = true
		}
		for key, it := range c.items {
			if !listed[key] {
				delete(c.items, key)
				change(it.entry, nil)
			}
		}
	}
	if changed {
		c.gen = gen
		if n := len(c.log); n > catalogLog {
			i := n - catalogLog
			for i < n && c.log[i].gen == c.log[i-1].gen {
				i++ // a generation is kept whole or not at all
			}
			c.log = slices.Clone(c.log[i:]) // a new array: snapshots keep theirs
		}
	}
	return entries
}

// fnKey names a function without building a "module/name" string: a
// sync looks every function up.
type fnKey struct{ module, name string }

// catalogItem is a function's entry and the stamp of the record it was
// built from.
type catalogItem struct {
	entry *desiredEntry
	stamp fnStamp
}

// changesSince returns the changes after generation from up to to, from a log
// snapshot, and false when the log no longer holds them all.
func changesSince(log []desiredChange, from, to uint64) ([]desiredChange, bool) {
	if from == to {
		return nil, true
	}
	i, _ := slices.BinarySearchFunc(log, from+1, func(c desiredChange, g uint64) int {
		switch {
		case c.gen < g:
			return -1
		case c.gen > g:
			return 1
		}
		return 0
	})
	if i == len(log) || log[i].gen != from+1 {
		return nil, false
	}
	j := i
	for j < len(log) && log[j].gen <= to {
		j++
	}
	return log[i:j], true
}
