package state

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/wispfn/wisp/protocol"
)

// Backlog sums up the outbox: what waits for a controller.
type Backlog struct {
	Count int
	Bytes int64 // encoded entries
	// OldestUnixUS is when the oldest waiting activation started (0: none).
	OldestUnixUS uint64
	// Newest are the last entries appended, newest first (at most the
	// number asked for).
	Newest []protocol.OutboxEntry
}

// add counts one encoded entry, keeping it among the newest n.
func (b *Backlog) add(v []byte, newest int) error {
	var e protocol.OutboxEntry
	if err := e.UnmarshalBinary(v); err != nil {
		return err
	}
	b.Count++
	b.Bytes += int64(len(v))
	if b.OldestUnixUS == 0 || (e.StartedUnixUS != 0 && e.StartedUnixUS < b.OldestUnixUS) {
		b.OldestUnixUS = e.StartedUnixUS
	}
	if newest > 0 {
		b.Newest = append(b.Newest, e)
		if len(b.Newest) > newest {
			b.Newest = b.Newest[1:]
		}
	}
	return nil
}

// scanOutbox reads the bbolt outbox, oldest first (ids sort by time).
func scanOutbox(tx *bolt.Tx, newest int, b *Backlog, ids map[string]bool) error {
	ob := tx.Bucket(bucketOutbox)
	if ob == nil {
		return nil
	}
	return ob.ForEach(func(k, v []byte) error {
		if ids != nil {
			ids[string(k)] = true
		}
		if err := b.add(v, newest); err != nil {
			return fmt.Errorf("corrupt outbox entry %s: %w", k, err)
		}
		return nil
	})
}

// Backlog sums up the outbox of a running agent, keeping the newest
// entries (newest first). It reads every entry: it is for status
// requests, not for a hot path.
func (s *State) Backlog(newest int) (Backlog, error) {
	s.journal.flush()
	var b Backlog
	err := s.db.View(func(tx *bolt.Tx) error { return scanOutbox(tx, newest, &b, nil) })
	slices.Reverse(b.Newest)
	return b, err
}

// Snapshot is what a stopped agent's state file holds, read by
// ReadSnapshot.
type Snapshot struct {
	AgentID string
	Desired []protocol.DesiredFunction
	// Digests is the code stored, sorted.
	Digests []string
	// Outbox counts the bbolt outbox and, after a crash, the entries the
	// outbox journal still holds (the next start moves them into bbolt).
	Outbox Backlog
}

// ReadSnapshot reads the state file at path without changing it: read
// only, with its journal read but not replayed, for `wisp-agent status`
// while the agent is stopped. A running agent holds the file's lock: after
// timeout it fails with ErrLocked (ask the agent's local API instead). A
// missing file fails with an error matching fs.ErrNotExist.
//
// Entries the journal holds after a crash may include some a controller
// already acknowledged (see journal.go); they are counted, as the next
// start will send them again.
func ReadSnapshot(path string, timeout time.Duration, newest int) (Snapshot, error) {
	var snap Snapshot
	if _, err := os.Stat(path); err != nil {
		return snap, fmt.Errorf("agent state: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return snap, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return snap, fmt.Errorf("open agent state %s: %w", path, err)
	}
	defer db.Close()
	ids := map[string]bool{}
	err = db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if v := meta.Get(keyVersion); v != nil && string(v) != schemaVersion {
				return fmt.Errorf("%w: %q (this agent knows %q)", ErrVersion, v, schemaVersion)
			}
		}
		if b := tx.Bucket(bucketIdentity); b != nil {
			snap.AgentID = string(b.Get(keyAgentID))
		}
		if b := tx.Bucket(bucketCode); b != nil {
			b.ForEach(func(k, _ []byte) error {
				snap.Digests = append(snap.Digests, string(k))
				return nil
			})
		}
		if b := tx.Bucket(bucketDesired); b != nil {
			err := b.ForEach(func(_, v []byte) error {
				var set protocol.DesiredSet
				if err := set.UnmarshalBinary(v); err != nil || len(set.Functions) != 1 {
					return fmt.Errorf("corrupt desired-set entry: %v", err)
				}
				snap.Desired = append(snap.Desired, set.Functions[0])
				return nil
			})
			if err != nil {
				return err
			}
		}
		return scanOutbox(tx, newest, &snap.Outbox, ids)
	})
	if err != nil {
		return snap, fmt.Errorf("read agent state %s: %w", path, err)
	}
	if err := readJournal(path+journalSuffix, newest, &snap.Outbox, ids); err != nil {
		return snap, err
	}
	slices.Sort(snap.Digests)
	slices.Reverse(snap.Outbox.Newest)
	return snap, nil
}

// readJournal adds the journal's entries that bbolt does not hold (ids)
// to b, as Open's replay would move them: the frames of the first epoch.
func readJournal(path string, newest int, b *Backlog, ids map[string]bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("outbox journal: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<30))
	if err != nil {
		return fmt.Errorf("outbox journal %s: %w", path, err)
	}
	var epoch uint64
	first := true
	for p := data; ; {
		r, e, n, ok := parseFrame(p)
		if !ok || (!first && e != epoch) {
			return nil
		}
		first, epoch, p = false, e, p[n:]
		if ids[r.id] {
			continue
		}
		ids[r.id] = true
		if err := b.add(r.entry, newest); err != nil {
			return nil // parseFrame decoded it: cannot happen
		}
	}
}
