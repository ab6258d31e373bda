package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EmbeddedVersion is the schema version this build of Embedded writes.
const EmbeddedVersion = embeddedVersion

// CheckEmbeddedFile opens the closed store file at path read-only and runs
// bbolt's consistency check plus the store's own invariants: every function
// belongs to a module, coderefs counts exactly the functions and kept
// versions using each digest, every kept version belongs to a function, code/ holds exactly the referenced digests, the unique indexes
// (tokens/, jointokenhashes/, agentcreds/) match their records,
// activationsbyfn/ indexes exactly the activations, and every queued
// delivery belongs to a recorded activation that succeeded.
func CheckEmbeddedFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		errs = append(errs, checkInvariants(tx))
		return errors.Join(errs...)
	})
}

func checkInvariants(tx *bolt.Tx) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if v := readU64(tx.Bucket(bucketMeta).Get(keyVersion)); v != embeddedVersion {
		fail("meta/version = %d, want %d", v, embeddedVersion)
	}
	if tx.Bucket(bucketModules).Get([]byte(DefaultModule)) == nil {
		fail("the default module is missing")
	}
	ids := map[string]bool{}
	_ = tx.Bucket(bucketModules).ForEach(func(name, id []byte) error {
		if tx.Bucket(bucketFunctions).Bucket(id) == nil {
			fail("module %q: no functions bucket", name)
		}
		ids[string(id)] = true
		return nil
	})
	refs := map[string]uint64{}
	_ = tx.Bucket(bucketFunctions).ForEachBucket(func(id []byte) error {
		if !ids[string(id)] {
			fail("functions bucket %x belongs to no module", id)
		}
		return tx.Bucket(bucketFunctions).Bucket(id).ForEach(func(name, v []byte) error {
			var r functionRecord
			if err := json.Unmarshal(v, &r); err != nil {
				fail("function %q: %v", name, err)
			}
			refs[r.Digest]++
			return nil
		})
	})
	if vb := tx.Bucket(bucketVersions); vb != nil {
		_ = vb.ForEachBucket(func(id []byte) error {
			fb := tx.Bucket(bucketFunctions).Bucket(id)
			if !ids[string(id)] || fb == nil {
				fail("versions bucket %x belongs to no module", id)
				return nil
			}
			return vb.Bucket(id).ForEachBucket(func(name []byte) error {
				if fb.Get(name) == nil {
					fail("versions of %x/%q: no such function", id, name)
				}
				return vb.Bucket(id).Bucket(name).ForEach(func(k, v []byte) error {
					var r versionRecord
					if err := json.Unmarshal(v, &r); err != nil {
						fail("version %x/%q/%d: %v", id, name, readU64(k), err)
					}
					refs[r.Digest]++
					return nil
				})
			})
		})
	}
	_ = tx.Bucket(bucketCodeRefs).ForEach(func(d, n []byte) error {
		if readU64(n) != refs[string(d)] {
			fail("coderefs/%s = %d, but %d functions and versions use it", d, readU64(n), refs[string(d)])
		}
		return nil
	})
	for d, n := range refs {
		if got := readU64(tx.Bucket(bucketCodeRefs).Get([]byte(d))); got != n {
			fail("coderefs/%s = %d, but %d functions and versions use it", d, got, n)
		}
		if tx.Bucket(bucketCode).Get([]byte(d)) == nil {
			fail("code/%s is missing", d)
		}
	}
	_ = tx.Bucket(bucketCode).ForEach(func(d, _ []byte) error {
		if refs[string(d)] == 0 {
			fail("code/%s is kept but unused", d)
		}
		return nil
	})
	_ = tx.Bucket(bucketSubjects).ForEach(func(name, v []byte) error {
		var r subjectRecord
		if err := json.Unmarshal(v, &r); err != nil {
			fail("subject %q: %v", name, err)
		}
		if got := tx.Bucket(bucketTokens).Get(r.TokenHash); string(got) != string(name) {
			fail("tokens index points %x at %q, want %q", r.TokenHash, got, name)
		}
		return nil
	})
	if a, b := tx.Bucket(bucketSubjects).Stats().KeyN, tx.Bucket(bucketTokens).Stats().KeyN; a != b {
		fail("%d subjects but %d token index entries", a, b)
	}
	_ = tx.Bucket(bucketJoinTokens).ForEach(func(id, v []byte) error {
		var r joinTokenRecord
		if err := json.Unmarshal(v, &r); err != nil {
			fail("join token %q: %v", id, err)
		}
		if got := tx.Bucket(bucketJoinTokenHashes).Get(r.SecretHash); string(got) != string(id) {
			fail("jointokenhashes index points %x at %q, want %q", r.SecretHash, got, id)
		}
		return nil
	})
	if a, b := tx.Bucket(bucketJoinTokens).Stats().KeyN, tx.Bucket(bucketJoinTokenHashes).Stats().KeyN; a != b {
		fail("%d join tokens but %d secret hash index entries", a, b)
	}
	_ = tx.Bucket(bucketAgents).ForEach(func(id, v []byte) error {
		var r agentRecord
		if err := json.Unmarshal(v, &r); err != nil {
			fail("agent %q: %v", id, err)
		}
		if got := tx.Bucket(bucketAgentCreds).Get(r.CredentialHash); string(got) != string(id) {
			fail("agentcreds index points %x at %q, want %q", r.CredentialHash, got, id)
		}
		return nil
	})
	if a, b := tx.Bucket(bucketAgents).Stats().KeyN, tx.Bucket(bucketAgentCreds).Stats().KeyN; a != b {
		fail("%d agents but %d credential index entries", a, b)
	}
	errs = append(errs, checkActivations(tx))
	return errors.Join(errs...)
}

func checkActivations(tx *bolt.Tx) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	indexed := 0
	_ = tx.Bucket(bucketActivations).ForEach(func(id, v []byte) error {
		a, err := getActivation(tx, id)
		if err != nil {
			fail("activation %q: %v", id, err)
			return nil
		}
		b := tx.Bucket(bucketActivationsByFn).Bucket(fnKey(a.Module, a.Function))
		if b == nil || !bytes.Equal(b.Get(id), v[:8]) {
			fail("activation %q of %s/%s: missing or wrong in activationsbyfn", id, a.Module, a.Function)
		}
		if tx.Bucket(bucketActivationsByRecorded).Get(recordedKey(a.Recorded, id)) == nil {
			fail("activation %q recorded %s: missing in activationsbyrecorded", id, a.Recorded)
		}
		return nil
	})
	if n, m := tx.Bucket(bucketActivations).Stats().KeyN, tx.Bucket(bucketActivationsByRecorded).Stats().KeyN; n != m {
		fail("%d activations but %d activationsbyrecorded entries", n, m)
	}
	_ = tx.Bucket(bucketActivationsByFn).ForEachBucket(func(k []byte) error {
		if _, _, ok := parseFnKey(k); !ok {
			fail("malformed activationsbyfn key %x", k)
		}
		n := tx.Bucket(bucketActivationsByFn).Bucket(k).Stats().KeyN
		if n == 0 {
			fail("activationsbyfn bucket %x is empty", k)
		}
		indexed += n
		return nil
	})
	if n := tx.Bucket(bucketActivations).Stats().KeyN; n != indexed {
		fail("%d activations but %d activationsbyfn entries", n, indexed)
	}
	_ = tx.Bucket(bucketDeliveries).ForEach(func(k, v []byte) error {
		d, err := getDelivery(tx, k, v)
		if err != nil {
			fail("delivery %x: %v", k, err)
			return nil
		}
		if a, _ := getActivation(tx, []byte(d.ActivationID)); a.Code != 0 {
			fail("delivery %q/%d queued for a failed activation (code %d)", d.ActivationID, d.SinkIndex, a.Code)
		}
		return nil
	})
	return errors.Join(errs...)
}
