package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSecrets holds module-scoped secrets, sealed by controller/secrets:
//
//	secrets/           (created when missing, without a schema version: nothing to backfill)
//	  <module id>/     one bucket per module that has secrets, keyed by id as functions/
//	    <name>         -> secretRecord (JSON)
//
// It is not in allBuckets because a file written before it has none; open
// creates it (CreateBucketIfNotExists) so files stay at their version.
var bucketSecrets = []byte("secrets")

type secretRecord struct {
	KeyID   string    `json:"key_id"`
	Sealed  []byte    `json:"sealed"`
	Updated time.Time `json:"updated"`
}

// createSecretsBucket adds the secrets bucket to a file that has none.
func createSecretsBucket(tx *bolt.Tx) error {
	_, err := tx.CreateBucketIfNotExists(bucketSecrets)
	return err
}

// PutSecret implements SecretStore.
func (e *Embedded) PutSecret(ctx context.Context, s Secret) (Secret, error) {
	s.Updated = now()
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketModules).Get([]byte(s.Module))
		if id == nil {
			return ErrNotFound
		}
		b, err := tx.Bucket(bucketSecrets).CreateBucketIfNotExists(id)
		if err != nil {
			return err
		}
		v, err := json.Marshal(secretRecord{KeyID: s.KeyID, Sealed: s.Sealed, Updated: s.Updated})
		if err != nil {
			return err
		}
		return b.Put([]byte(s.Name), v)
	}, one(ChangeSecrets, s.Module+"/"+s.Name))
	if err != nil {
		return Secret{}, boltFail(err, "put secret %q of module %q", s.Name, s.Module)
	}
	return s, nil
}

func readSecrets(b *bolt.Bucket, module string, out []Secret) ([]Secret, error) {
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		var r secretRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode secret %q: %w", k, err)
		}
		out = append(out, Secret{Module: module, Name: string(k), KeyID: r.KeyID, Sealed: r.Sealed, Updated: r.Updated})
		return nil
	})
	return out, err
}

// ListSecrets implements SecretStore.
func (e *Embedded) ListSecrets(ctx context.Context, module string) ([]Secret, error) {
	out := []Secret{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketModules).Get([]byte(module))
		if id == nil {
			return ErrNotFound
		}
		var err error
		out, err = readSecrets(tx.Bucket(bucketSecrets).Bucket(id), module, out)
		return err
	})
	if err != nil {
		return nil, boltFail(err, "list secrets of module %q", module)
	}
	return out, nil
}

// DeleteSecret implements SecretStore.
func (e *Embedded) DeleteSecret(ctx context.Context, module, name string) error {
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketModules).Get([]byte(module))
		if id == nil {
			return ErrNotFound
		}
		b := tx.Bucket(bucketSecrets).Bucket(id)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		if k, _ := b.Cursor().First(); k == nil {
			return tx.Bucket(bucketSecrets).DeleteBucket(id)
		}
		return nil
	}, one(ChangeSecrets, module+"/"+name))
	return boltFail(err, "delete secret %q of module %q", name, module)
}

// AllSecrets implements SecretStore.
func (e *Embedded) AllSecrets(ctx context.Context) ([]Secret, error) {
	out := []Secret{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		secrets := tx.Bucket(bucketSecrets)
		return tx.Bucket(bucketModules).ForEach(func(name, id []byte) error {
			var err error
			out, err = readSecrets(secrets.Bucket(id), string(name), out)
			return err
		})
	})
	if err != nil {
		return nil, boltFail(err, "list secrets")
	}
	return out, nil
}

// RewrapSecret implements SecretStore.
func (e *Embedded) RewrapSecret(ctx context.Context, s Secret, prev []byte) (bool, error) {
	swapped := false
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketModules).Get([]byte(s.Module))
		if id == nil {
			return nil
		}
		b := tx.Bucket(bucketSecrets).Bucket(id)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(s.Name))
		if v == nil {
			return nil
		}
		var r secretRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode secret %q: %w", s.Name, err)
		}
		if !bytes.Equal(r.Sealed, prev) || bytes.Equal(prev, s.Sealed) {
			return nil
		}
		r.KeyID, r.Sealed = s.KeyID, s.Sealed
		nv, err := json.Marshal(r)
		if err != nil {
			return err
		}
		swapped = true
		return b.Put([]byte(s.Name), nv)
	}, func() []Change {
		if !swapped {
			return nil
		}
		return []Change{{Kind: ChangeSecrets, Key: s.Module + "/" + s.Name}}
	})
	if err != nil {
		return false, boltFail(err, "rewrap secret %q of module %q", s.Name, s.Module)
	}
	return swapped, nil
}

// deleteModuleSecrets drops a module's secrets (DeleteModule).
func deleteModuleSecrets(tx *bolt.Tx, id []byte) error {
	secrets := tx.Bucket(bucketSecrets)
	if secrets.Bucket(id) == nil {
		return nil
	}
	return secrets.DeleteBucket(id)
}
