package state

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/protocol"
)

var (
	bucketDesired   = []byte("desired")
	bucketOutbox    = []byte("outbox")
	bucketSeen      = []byte("seen")      // message key -> activation id
	bucketSeenOrder = []byte("seenorder") // activation id -> message key (oldest first, for pruning)
)

// maxSeen bounds the remembered message keys (32 + 26 bytes each, twice).
const maxSeen = 100_000

func desiredKey(module, name string) []byte { return []byte(module + "/" + name) }

// keyDesiredDigest (in bucketMeta) is the digest of the stored desired
// set (protocol.SetDigest), written in the same transaction as the set:
// absent when the set came without one.
var keyDesiredDigest = []byte("desired_digest")

// ErrDesiredBase: a delta was made for another desired set than the one
// stored; nothing was changed (the controller is asked for its full set).
var ErrDesiredBase = errors.New("the delta applies to another desired set")

// SetDesired replaces the desired set: the functions this agent serves on
// its own. The stored set has no digest: a delta applies to it only after
// a full set with one (SetDesiredSet).
//
// Secret values are kept apart, sealed with the agent's key
// (SecretsKeyFile, made 0600 beside the state file when first needed):
// the file alone does not hold them.
func (s *State) SetDesired(fs []protocol.DesiredFunction) error {
	return s.SetDesiredSet(&protocol.DesiredSet{Functions: fs})
}

// SetDesiredSet is SetDesired that also stores the set's digest, for the
// deltas that follow it (ApplyDesired).
func (s *State) SetDesiredSet(set *protocol.DesiredSet) error {
	s.namedMu.Lock()
	defer s.namedMu.Unlock()
	s.named = nil // counted again when next needed
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketDesired, bucketDesiredSecrets} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		b, err := tx.CreateBucket(bucketDesired)
		if err != nil {
			return err
		}
		sb, err := tx.CreateBucket(bucketDesiredSecrets)
		if err != nil {
			return err
		}
		for i := range set.Functions {
			if err := s.putDesired(b, sb, set.Functions[i]); err != nil {
				return err
			}
		}
		return putDesiredDigest(tx, set.Digest)
	})
}

// putDesired stores one function of the desired set, its secrets sealed
// apart.
func (s *State) putDesired(b, sb *bolt.Bucket, f protocol.DesiredFunction) error {
	if err := s.putSecrets(sb, &f); err != nil {
		return err
	}
	f.Secrets = nil
	set := protocol.DesiredSet{Functions: []protocol.DesiredFunction{f}}
	return b.Put(desiredKey(f.Module, f.Name), set.Append(nil))
}

func putDesiredDigest(tx *bolt.Tx, d protocol.SetDigest) error {
	meta := tx.Bucket(bucketMeta)
	if d == (protocol.SetDigest{}) {
		return meta.Delete(keyDesiredDigest)
	}
	return meta.Put(keyDesiredDigest, d[:])
}

// DesiredDigest is the digest of the stored desired set (zero: none).
func (s *State) DesiredDigest() protocol.SetDigest {
	var d protocol.SetDigest
	s.db.View(func(tx *bolt.Tx) error {
		copy(d[:], tx.Bucket(bucketMeta).Get(keyDesiredDigest))
		return nil
	})
	return d
}

// ApplyDesired changes the stored desired set by d, writing and deleting
// only the functions d names, when the stored set's digest is d.Base
// (else ErrDesiredBase and nothing changes; a zero Base never applies).
// It reports whether a function d touched has local triggers or timers,
// before or after: only then do they need a resync.
func (s *State) ApplyDesired(d *protocol.DesiredDelta) (triggers bool, err error) {
	s.namedMu.Lock()
	defer s.namedMu.Unlock()
	count := map[string]int{} // what the delta changes in s.named
	name := func(f *protocol.DesiredFunction, n int) {
		count[f.Digest] += n
		for _, k := range f.KeepDigests {
			count[k] += n
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		clear(count)
		var stored protocol.SetDigest
		copy(stored[:], tx.Bucket(bucketMeta).Get(keyDesiredDigest))
		if d.Base == (protocol.SetDigest{}) || stored != d.Base {
			return ErrDesiredBase
		}
		b, err := tx.CreateBucketIfNotExists(bucketDesired)
		if err != nil {
			return err
		}
		sb, err := tx.CreateBucketIfNotExists(bucketDesiredSecrets)
		if err != nil {
			return err
		}
		// replaced takes out the stored function at key, if any, and
		// reports whether it had triggers.
		replaced := func(key []byte) bool {
			var old protocol.DesiredSet
			v := b.Get(key)
			if v == nil || old.UnmarshalBinary(v) != nil || len(old.Functions) != 1 {
				return false
			}
			name(&old.Functions[0], -1)
			return len(old.Functions[0].LocalTopics) > 0 || len(old.Functions[0].Timers) > 0
		}
		for i := range d.Upserts {
			f := &d.Upserts[i]
			had := replaced(desiredKey(f.Module, f.Name))
			triggers = triggers || had || len(f.LocalTopics) > 0 || len(f.Timers) > 0
			name(f, 1)
			if err := s.putDesired(b, sb, *f); err != nil {
				return err
			}
		}
		for _, r := range d.Removes {
			key := desiredKey(r.Module, r.Name)
			triggers = replaced(key) || triggers
			if err := b.Delete(key); err != nil {
				return err
			}
			if err := sb.Delete(key); err != nil {
				return err
			}
		}
		return putDesiredDigest(tx, d.Result)
	})
	if err == nil && s.named != nil {
		for dg, n := range count {
			if s.named[dg] += n; s.named[dg] <= 0 {
				delete(s.named, dg)
			}
		}
	}
	return triggers, err
}

// Desired returns the desired set, sorted by module then name, with the
// secrets' values. Those that do not open (ErrSecretsKey: the key file was
// lost or replaced) are left out, as DesiredFunction leaves them out; the
// controller's next desired set brings them again.
func (s *State) Desired() ([]protocol.DesiredFunction, error) {
	var out []protocol.DesiredFunction
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDesired)
		if b == nil {
			return nil
		}
		sb := tx.Bucket(bucketDesiredSecrets)
		return b.ForEach(func(_, v []byte) error {
			var set protocol.DesiredSet
			if err := set.UnmarshalBinary(v); err != nil || len(set.Functions) != 1 {
				return fmt.Errorf("corrupt desired-set entry: %v", err)
			}
			f := set.Functions[0]
			s.openSecrets(sb, &f)
			out = append(out, f)
			return nil
		})
	})
	return out, err
}

// Needed returns those of digests the desired set still names, as a
// function's code or as code of an earlier version it keeps
// (DesiredFunction.KeepDigests): code the agent must not drop.
//
// The digests are counted once (a read of the whole set) and the count
// is then kept by ApplyDesired, so a Drop costs O(digests), not a read
// of every function.
func (s *State) Needed(digests []string) ([]string, error) {
	s.namedMu.Lock()
	defer s.namedMu.Unlock()
	if s.named == nil {
		named := map[string]int{}
		err := s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDesired)
			if b == nil {
				return nil
			}
			return b.ForEach(func(_, v []byte) error {
				var set protocol.DesiredSet
				if err := set.UnmarshalBinary(v); err != nil || len(set.Functions) != 1 {
					return fmt.Errorf("corrupt desired-set entry: %v", err)
				}
				f := set.Functions[0]
				named[f.Digest]++
				for _, d := range f.KeepDigests {
					named[d]++
				}
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
		s.named = named
	}
	var out []string
	for _, d := range digests {
		if s.named[d] > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// DesiredFunction looks one function of the desired set up, with its
// secrets' values when they open with the agent's key.
func (s *State) DesiredFunction(module, name string) (protocol.DesiredFunction, bool) {
	var f protocol.DesiredFunction
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDesired)
		if b == nil {
			return nil
		}
		if v := b.Get(desiredKey(module, name)); v != nil {
			var set protocol.DesiredSet
			if set.UnmarshalBinary(v) == nil && len(set.Functions) == 1 {
				f, found = set.Functions[0], true
				// Without its secrets (ErrSecretsKey) it runs without them,
				// as a function whose config names none.
				s.openSecrets(tx.Bucket(bucketDesiredSecrets), &f)
			}
		}
		return nil
	})
	return f, found
}

// AppendOutbox stores a locally run activation durably: when it returns
// nil the entry is on disk (fsync'd, in the outbox journal) and survives
// kill -9 and power loss. Concurrent calls share one fsync; a lone call is
// not delayed. See journal.go for the two stages of the write path.
func (s *State) AppendOutbox(e *protocol.OutboxEntry) error { return s.AppendOutboxKeyed(e, nil) }

// AppendOutboxKeyed is AppendOutbox that also remembers key (a trigger
// message's) with the entry, for Seen.
func (s *State) AppendOutboxKeyed(e *protocol.OutboxEntry, key []byte) error {
	if e.ActivationID == "" {
		return errors.New("outbox entry without an activation id")
	}
	return s.journal.append(outboxReq{entry: e.Append(nil), id: e.ActivationID, key: key, sync: true})
}

// AppendOutboxUnsynced is AppendOutbox that returns once the entry is
// written to the operating system, before the fsync: the entry survives the
// agent crashing or being killed, not a power cut in the next
// commitLinger (25ms), after which it is fsync'd with the bbolt outbox.
// It saves the caller one fsync (about 0.1 ms on an SSD, several ms on an
// SD card).
func (s *State) AppendOutboxUnsynced(e *protocol.OutboxEntry) error {
	if e.ActivationID == "" {
		return errors.New("outbox entry without an activation id")
	}
	return s.journal.append(outboxReq{entry: e.Append(nil), id: e.ActivationID})
}

// OnOutboxCommit sets a function called each time appended entries become
// visible to Outbox (the agent wakes its drain with it).
func (s *State) OnOutboxCommit(f func()) { s.journal.onCommit.Store(&f) }

// Outbox returns up to limit entries, oldest first (activation ids sort by time).
// It sees every entry whose AppendOutbox returned before the call.
func (s *State) Outbox(limit int) ([]protocol.OutboxEntry, error) {
	s.journal.flush()
	var out []protocol.OutboxEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var e protocol.OutboxEntry
			if err := e.UnmarshalBinary(v); err != nil {
				return fmt.Errorf("corrupt outbox entry %s: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// OutboxLen counts the entries waiting for the controller.
func (s *State) OutboxLen() int {
	s.journal.flush()
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketOutbox); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// OutboxStats are the outbox's counters, for metrics.
type OutboxStats struct {
	Entries   int     // waiting for the controller (in bbolt or still in the journal)
	Appended  uint64  // appends since Open
	Failed    uint64  // appends refused by a failed journal write
	Acked     uint64  // entries the controller acknowledged since Open
	Fsyncs    uint64  // journal fsyncs (one per group of appends)
	FsyncSecs float64 // time spent in them
}

// OutboxStats reads the counters without waiting for the background commit.
func (s *State) OutboxStats() OutboxStats {
	j := s.journal
	st := OutboxStats{Appended: j.appended.Load(), Failed: j.failed.Load(), Acked: s.acked.Load(),
		Fsyncs: j.fsyncs.Load(), FsyncSecs: float64(j.fsyncNanos.Load()) / 1e9}
	j.mu.Lock()
	st.Entries = len(j.journaled)
	j.mu.Unlock()
	s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketOutbox); b != nil {
			st.Entries += b.Stats().KeyN
		}
		return nil
	})
	return st
}

// AckOutbox deletes entries the controller has recorded.
func (s *State) AckOutbox(ids ...string) error {
	s.journal.flush() // an id still in the journal would come back after the delete
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.acked.Add(uint64(len(ids)))
	}
	return err
}

// remember records a message key, pruning the oldest beyond maxSeen.
func remember(tx *bolt.Tx, key []byte, id string) error {
	seen, err := tx.CreateBucketIfNotExists(bucketSeen)
	if err != nil {
		return err
	}
	order, err := tx.CreateBucketIfNotExists(bucketSeenOrder)
	if err != nil {
		return err
	}
	if err := seen.Put(key, []byte(id)); err != nil {
		return err
	}
	if err := order.Put([]byte(id), key); err != nil {
		return err
	}
	if n := order.Stats().KeyN; n > maxSeen {
		c := order.Cursor()
		for k, v := c.First(); k != nil && n > maxSeen; k, v = c.Next() {
			if err := seen.Delete(v); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n--
		}
	}
	return nil
}

// Seen returns the activation id a message key was run as, if remembered.
func (s *State) Seen(key []byte) (string, bool) {
	if id, ok := s.journal.seen(key); ok {
		return id, true
	}
	var id string
	s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSeen); b != nil {
			if v := b.Get(key); v != nil {
				id = string(v)
			}
		}
		return nil
	})
	return id, id != ""
}
