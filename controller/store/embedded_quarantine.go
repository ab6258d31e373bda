package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// quarantineRecord is a quarantine as stored; the digest is the key.
type quarantineRecord struct {
	Reason  string    `json:"reason"`
	Agent   string    `json:"agent"`
	Since   time.Time `json:"since"`
	Created time.Time `json:"created"`
}

func getQuarantine(tx *bolt.Tx, digest []byte) (Quarantine, error) {
	v := tx.Bucket(bucketQuarantine).Get(digest)
	if v == nil {
		return Quarantine{}, ErrNotFound
	}
	var r quarantineRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Quarantine{}, fmt.Errorf("decode quarantine %q: %w", digest, err)
	}
	return Quarantine{Digest: string(digest), Reason: r.Reason, Agent: r.Agent, Since: storeTime(r.Since), Created: r.Created.UTC()}, nil
}

// QuarantineDigest implements Store.
func (e *Embedded) QuarantineDigest(ctx context.Context, q Quarantine) (bool, error) {
	q, err := prepareQuarantine(q, now())
	if err != nil {
		return false, err
	}
	created := false
	err = e.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQuarantine)
		if b.Get([]byte(q.Digest)) != nil {
			return nil
		}
		v, err := json.Marshal(quarantineRecord{Reason: q.Reason, Agent: q.Agent, Since: q.Since, Created: q.Created})
		if err != nil {
			return err
		}
		created = true
		return b.Put([]byte(q.Digest), v)
	})
	if err != nil {
		return false, boltFail(err, "quarantine %s", q.Digest)
	}
	return created, nil
}

// ListQuarantine implements Store.
func (e *Embedded) ListQuarantine(ctx context.Context) ([]Quarantine, error) {
	qs := []Quarantine{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, _ []byte) error {
			q, err := getQuarantine(tx, k)
			qs = append(qs, q)
			return err
		})
	})
	if err != nil {
		return nil, boltFail(err, "list quarantine")
	}
	return qs, nil
}

// ReleaseDigest implements Store.
func (e *Embedded) ReleaseDigest(ctx context.Context, digest string) (Quarantine, error) {
	var q Quarantine
	err := e.update(ctx, func(tx *bolt.Tx) error {
		var err error
		if q, err = getQuarantine(tx, []byte(digest)); err != nil {
			return err
		}
		return tx.Bucket(bucketQuarantine).Delete([]byte(digest))
	})
	if err != nil {
		return Quarantine{}, boltFail(err, "release %s", digest)
	}
	return q, nil
}
