package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/protocol"
)

// The agent's quarantine: digests it must not compile or run. An entry comes
// from one of two places:
//
//   - a crash of this agent (Open found the digest in the crash-marker
//     file): reported is false until a controller says it recorded the
//     crash (Welcome.crashes_recorded), and the agent reports it in every
//     Hello until then;
//   - a controller's Quarantine set (crashes of any agent, as the
//     controller keeps them): reported is true, and the next set replaces
//     them, which is how an operator's release reaches the agent.
//
// Entries are kept in bbolt (bucket quarantine/, digest -> JSON) and in
// memory, where every invocation checks them without a transaction.

var bucketQuarantine = []byte("quarantine")

// QuarantineEntry is one quarantined digest on this agent.
type QuarantineEntry struct {
	Digest string    `json:"-"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Reported: a controller holds the entry (it sent it, or recorded this
	// agent's crash report).
	Reported bool `json:"reported"`
}

// Wire returns the entry as the protocol carries it.
func (q QuarantineEntry) Wire() protocol.QuarantineEntry {
	return protocol.QuarantineEntry{Digest: q.Digest, Reason: q.Reason, SinceUnixMS: uint64(q.Since.UnixMilli())}
}

// crashReason is the reason a crash quarantines a digest with.
func crashReason(c Crash) string {
	r := fmt.Sprintf("the agent died while %s this code", c.Activity)
	if c.Activity == "" {
		r = "the agent died while it held this code"
	}
	if c.Alongside > 0 {
		r += fmt.Sprintf(" (alongside %d other marked activities, any of which may be the cause)", c.Alongside)
	}
	return r
}

// quarantineCrashes stores the crashes Open found as unreported entries; a
// digest already quarantined keeps its entry.
func quarantineCrashes(tx *bolt.Tx, crashes []Crash) error {
	b, err := tx.CreateBucketIfNotExists(bucketQuarantine)
	if err != nil {
		return err
	}
	for _, c := range crashes {
		if b.Get([]byte(c.Digest)) != nil {
			continue
		}
		if err := putQuarantine(b, QuarantineEntry{Digest: c.Digest, Reason: crashReason(c), Since: c.Since}); err != nil {
			return err
		}
	}
	return nil
}

func putQuarantine(b *bolt.Bucket, q QuarantineEntry) error {
	v, err := json.Marshal(q)
	if err != nil {
		return err
	}
	return b.Put([]byte(q.Digest), v)
}

// loadQuarantine reads every entry into a fresh map.
func loadQuarantine(tx *bolt.Tx) (map[string]QuarantineEntry, error) {
	out := map[string]QuarantineEntry{}
	b := tx.Bucket(bucketQuarantine)
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		var q QuarantineEntry
		if err := json.Unmarshal(v, &q); err != nil {
			return fmt.Errorf("corrupt quarantine entry %s: %w", k, err)
		}
		q.Digest = string(k)
		q.Since = q.Since.UTC()
		out[q.Digest] = q
		return nil
	})
	return out, err
}

// Crashes returns what Open found in the crash-marker file: the code that
// was compiling or running when the previous process died. Open has
// already quarantined it.
func (s *State) Crashes() []Crash { return slices.Clone(s.crashes) }

// MarkRunning records, before it starts, that the agent is about to spend
// activity ("compiling", "running") on digest, and returns the function
// that clears the record once it is over. It costs two small writes to the
// page cache (no fsync, no transaction). See running.go.
//
// # Errors
//
// A write that failed; clear is then a no-op and the caller should go on
// (the agent is merely less protected against this code crashing it).
func (s *State) MarkRunning(digest, activity string) (clear func(), err error) {
	return s.marks.mark(digest, activity)
}

// Quarantined reports whether digest is quarantined on this agent, without
// a transaction.
func (s *State) Quarantined(digest string) (QuarantineEntry, bool) {
	q, ok := (*s.quarantine.Load())[digest]
	return q, ok
}

// Quarantine lists the quarantined digests, sorted.
func (s *State) Quarantine() []QuarantineEntry {
	m := *s.quarantine.Load()
	out := make([]QuarantineEntry, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// UnreportedCrashes lists the entries no controller has recorded yet, for
// the next Hello.
func (s *State) UnreportedCrashes() []protocol.QuarantineEntry {
	var out []protocol.QuarantineEntry
	for _, q := range s.Quarantine() {
		if !q.Reported {
			out = append(out, q.Wire())
		}
	}
	return out
}

// CrashesRecorded marks the given crash reports as held by a controller:
// from now on only a controller's Quarantine set may release them.
func (s *State) CrashesRecorded(digests []string) error {
	return s.updateQuarantine(func(b *bolt.Bucket, m map[string]QuarantineEntry) error {
		for _, d := range digests {
			q, ok := m[d]
			if !ok || q.Reported {
				continue
			}
			q.Reported = true
			if err := putQuarantine(b, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetQuarantine applies a controller's Quarantine set: it replaces every
// reported entry, and keeps the crashes no controller has recorded yet. It
// returns the digests it released.
func (s *State) SetQuarantine(set []protocol.QuarantineEntry) (released []string, err error) {
	err = s.updateQuarantine(func(b *bolt.Bucket, m map[string]QuarantineEntry) error {
		want := make(map[string]protocol.QuarantineEntry, len(set))
		for _, e := range set {
			if e.Digest != "" {
				want[e.Digest] = e
			}
		}
		for d, q := range m {
			if _, keep := want[d]; !keep && q.Reported {
				if err := b.Delete([]byte(d)); err != nil {
					return err
				}
				released = append(released, d)
			}
		}
		for d, e := range want {
			q := QuarantineEntry{Digest: d, Reason: e.Reason, Since: time.UnixMilli(int64(e.SinceUnixMS)).UTC(), Reported: true}
			if old, ok := m[d]; ok && old == q {
				continue
			}
			if err := putQuarantine(b, q); err != nil {
				return err
			}
		}
		return nil
	})
	slices.Sort(released)
	return released, err
}

// ReleaseQuarantine removes digests from the quarantine whatever their
// origin (an operator on the agent's own box). Absent digests are ignored.
func (s *State) ReleaseQuarantine(digests ...string) error {
	return s.updateQuarantine(func(b *bolt.Bucket, _ map[string]QuarantineEntry) error {
		for _, d := range digests {
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return nil
	})
}

// updateQuarantine runs change in a write transaction, then republishes the
// in-memory copy. Writes are rare (a crash, an operator's release).
func (s *State) updateQuarantine(change func(b *bolt.Bucket, m map[string]QuarantineEntry) error) error {
	s.quarantineMu.Lock()
	defer s.quarantineMu.Unlock()
	var fresh map[string]QuarantineEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketQuarantine)
		if err != nil {
			return err
		}
		if err := change(b, *s.quarantine.Load()); err != nil {
			return err
		}
		fresh, err = loadQuarantine(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("update quarantine: %w", err)
	}
	s.quarantine.Store(&fresh)
	return nil
}

// QuarantineError says why a digest is refused.
type QuarantineError struct{ Entry QuarantineEntry }

func (e *QuarantineError) Error() string {
	return fmt.Sprintf("code %s is quarantined since %s: %s; an operator must release it (wisp quarantine release)",
		shortDigest(e.Entry.Digest), e.Entry.Since.Format(time.RFC3339), e.Entry.Reason)
}

// Is makes errors.Is(err, ErrQuarantined) true.
func (e *QuarantineError) Is(target error) bool { return target == ErrQuarantined }

func shortDigest(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}
