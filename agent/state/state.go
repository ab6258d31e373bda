package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/wispfn/wisp/internal/sealbox"
)

var (
	// ErrLocked: another process holds the state file.
	ErrLocked = errors.New("agent state is locked by another process")
	// ErrNotFound: no such code.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch: code does not hash to the digest it was stored under.
	ErrDigestMismatch = errors.New("code does not match its digest")
	// ErrVersion: the file was written by a newer agent.
	ErrVersion = errors.New("agent state file has an unknown version")
	// ErrQuarantined is matched by a *QuarantineError: the code is
	// quarantined on this agent.
	ErrQuarantined = errors.New("quarantined")
)

const schemaVersion = "1"

var (
	bucketMeta     = []byte("meta")
	bucketIdentity = []byte("identity")
	bucketCode     = []byte("code")

	keyVersion    = []byte("version")
	keyAgentID    = []byte("agent_id")
	keyCredential = []byte("credential")
	keyController = []byte("controller")
)

// State is the agent's bbolt file. Safe for concurrent use.
type State struct {
	db      *bolt.DB
	journal *journal
	acked   atomic.Uint64

	marks   *marks  // the crash-marker file
	crashes []Crash // what Open found in it
	// quarantine is the quarantine bucket, in memory; replaced whole
	// under quarantineMu after each write.
	quarantine   atomic.Pointer[map[string]QuarantineEntry]
	quarantineMu sync.Mutex

	// keyPath is the secrets key's file (SecretsKeyFile beside the state
	// file), read or made when first needed; key is it, once read.
	keyPath string
	keyMu   sync.Mutex
	key     *sealbox.Key

	// named counts, per digest, the desired functions naming it as code
	// or kept code (Needed), built on first use and kept by the writes of
	// the desired set under namedMu (edge.go).
	namedMu sync.Mutex
	named   map[string]int
}

// Identity is who the agent is to its controller.
type Identity struct {
	AgentID    string
	Credential []byte
	// Controller is the pinned fingerprint of the controller's key.
	Controller []byte
}

// Open opens or creates the state file at path.
func Open(path string) (*State, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open agent state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte(schemaVersion)); err != nil {
				return err
			}
		case string(v) != schemaVersion:
			return fmt.Errorf("%w: %q (this agent knows %q)", ErrVersion, v, schemaVersion)
		}
		for _, b := range [][]byte{bucketIdentity, bucketCode} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open agent state %s: %w", path, err)
	}
	j, err := openJournal(db, path+journalSuffix)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &State{db: db, journal: j, keyPath: filepath.Join(filepath.Dir(path), SecretsKeyFile)}
	if err := s.recoverCrashes(path + runningSuffix); err != nil {
		j.close()
		db.Close()
		return nil, err
	}
	return s, nil
}

// recoverCrashes opens the crash-marker file, quarantines what it holds
// (code that was running when the previous process died), loads the
// quarantine into memory, and only then empties the file: a crash in
// between finds the marks again, and quarantining twice changes nothing.
func (s *State) recoverCrashes(path string) error {
	m, crashes, err := openMarks(path)
	if err != nil {
		return err
	}
	var q map[string]QuarantineEntry
	load := func(tx *bolt.Tx) (err error) {
		q, err = loadQuarantine(tx)
		return err
	}
	if len(crashes) > 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			if err := quarantineCrashes(tx, crashes); err != nil {
				return err
			}
			return load(tx)
		})
	} else {
		err = s.db.View(load)
	}
	if err == nil {
		err = m.reset()
	}
	if err != nil {
		m.f.Close()
		return fmt.Errorf("recover crash markers %s: %w", path, err)
	}
	s.marks, s.crashes = m, crashes
	s.quarantine.Store(&q)
	return nil
}

// Close moves what the outbox journal holds into bbolt and closes both
// files. No AppendOutbox may be running or start after it.
//
// Close also clears the crash markers: a process that stops in order did
// not die of the code it was running. Close it only after the runtime
// stopped running guests.
func (s *State) Close() error {
	return errors.Join(s.journal.close(), s.marks.close(), s.db.Close())
}

// Identity returns the stored identity; zero fields when the agent never joined.
func (s *State) Identity() (Identity, error) {
	var id Identity
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentity)
		id.AgentID = string(b.Get(keyAgentID))
		id.Credential = bytes.Clone(b.Get(keyCredential))
		id.Controller = bytes.Clone(b.Get(keyController))
		return nil
	})
	return id, err
}

// SetIdentity stores the identity issued at join.
func (s *State) SetIdentity(id Identity) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentity)
		for k, v := range map[string][]byte{string(keyAgentID): []byte(id.AgentID), string(keyCredential): id.Credential, string(keyController): id.Controller} {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutCode stores wasm bytes under their digest ("sha256:<hex>").
func (s *State) PutCode(digest string, code []byte) error {
	if want := digestOf(code); want != digest {
		return fmt.Errorf("%w: got %s, bytes hash to %s", ErrDigestMismatch, digest, want)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCode).Put([]byte(digest), code)
	})
}

// Code returns the bytes stored under digest, or ErrNotFound.
func (s *State) Code(digest string) ([]byte, error) {
	var code []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCode).Get([]byte(digest))
		if v == nil {
			return fmt.Errorf("code %s: %w", digest, ErrNotFound)
		}
		code = bytes.Clone(v)
		return nil
	})
	return code, err
}

// HasCode reports whether digest is stored.
func (s *State) HasCode(digest string) bool {
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketCode).Get([]byte(digest)) != nil
		return nil
	})
	return found
}

// Digests lists stored digests, sorted.
func (s *State) Digests() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCode).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	slices.Sort(out)
	return out, err
}

// DeleteCode removes digests; absent ones are ignored.
func (s *State) DeleteCode(digests ...string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCode)
		for _, d := range digests {
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Check runs bbolt's consistency check; tests call it on cleanup.
func (s *State) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

func digestOf(code []byte) string {
	sum := sha256.Sum256(code)
	return "sha256:" + hex.EncodeToString(sum[:])
}
