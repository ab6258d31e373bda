package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// versionRecord is a kept version as stored; its module, function and
// number are the keys.
type versionRecord struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	ABI     string    `json:"abi"`
	Spec    []byte    `json:"spec"` // encodeVersionSpec's JSON
	Created time.Time `json:"created"`
}

// functionVersions returns the versions bucket of a function, nil when it
// has none; create makes it (and its module's) if missing.
func functionVersions(tx *bolt.Tx, module string, name string, create bool) (*bolt.Bucket, error) {
	id := tx.Bucket(bucketModules).Get([]byte(module))
	if id == nil {
		return nil, ErrNotFound
	}
	all := tx.Bucket(bucketVersions)
	if !create {
		mb := all.Bucket(id)
		if mb == nil {
			return nil, nil
		}
		return mb.Bucket([]byte(name)), nil
	}
	mb, err := all.CreateBucketIfNotExists(id)
	if err != nil {
		return nil, err
	}
	return mb.CreateBucketIfNotExists([]byte(name))
}

// putVersion stores v in b and takes a reference to its code (which the
// function's own reference keeps stored).
func putVersion(tx *bolt.Tx, b *bolt.Bucket, v FunctionVersion, code []byte) error {
	rec, err := json.Marshal(versionRecord{Digest: v.Digest, Size: v.Size, ABI: v.ABI, Spec: encodeVersionSpec(v.Spec), Created: v.Created})
	if err != nil {
		return err
	}
	if err := addCodeRef(tx, v.Digest, code); err != nil {
		return err
	}
	return b.Put(u64(uint64(v.Number)), rec)
}

// recordVersion adds fn as the newest version of its function, after
// keeping prev as version 1 when the function has none yet. code is fn's;
// prev's code is stored (the function referred to it until now).
func recordVersion(tx *bolt.Tx, module string, prev, fn Function, code []byte) error {
	b, err := functionVersions(tx, module, fn.Name, true)
	if err != nil {
		return err
	}
	var n uint64
	if k, _ := b.Cursor().Last(); k != nil {
		n = readU64(k)
	}
	if n == 0 {
		n = 1
		if err := putVersion(tx, b, versionOf(prev, 1), nil); err != nil {
			return err
		}
	}
	return putVersion(tx, b, versionOf(fn, int64(n+1)), code)
}

// deleteVersions deletes the versions of one function of the module with
// id (name "": of all its functions), dropping their code references.
func deleteVersions(tx *bolt.Tx, id []byte, name string) error {
	mb := tx.Bucket(bucketVersions).Bucket(id)
	if mb == nil {
		return nil
	}
	drop := func(fb *bolt.Bucket) error {
		return fb.ForEach(func(k, v []byte) error {
			var r versionRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode version %d: %w", readU64(k), err)
			}
			return dropCodeRef(tx, r.Digest)
		})
	}
	if name != "" {
		fb := mb.Bucket([]byte(name))
		if fb == nil {
			return nil
		}
		if err := drop(fb); err != nil {
			return err
		}
		return mb.DeleteBucket([]byte(name))
	}
	if err := mb.ForEachBucket(func(k []byte) error { return drop(mb.Bucket(k)) }); err != nil {
		return err
	}
	return tx.Bucket(bucketVersions).DeleteBucket(id)
}

func readVersion(k, v []byte) (FunctionVersion, error) {
	var r versionRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return FunctionVersion{}, fmt.Errorf("decode version %d: %w", readU64(k), err)
	}
	fv := FunctionVersion{Number: int64(readU64(k)), Digest: r.Digest, Size: r.Size, ABI: r.ABI, Created: r.Created.UTC()}
	fv.Spec, fv.Unreadable = decodeVersionSpec(r.Spec)
	return fv, nil
}

// FunctionVersions implements Store.
func (e *Embedded) FunctionVersions(ctx context.Context, module, name string) ([]FunctionVersion, error) {
	var vs []FunctionVersion
	err := e.view(ctx, func(tx *bolt.Tx) error {
		fb, err := moduleBucket(tx, module)
		if err != nil {
			return err
		}
		fn, err := getFunction(fb, module, name)
		if err != nil {
			return err
		}
		b, err := functionVersions(tx, module, name, false)
		if err != nil {
			return err
		}
		if b != nil {
			c := b.Cursor()
			for k, v := c.Last(); k != nil; k, v = c.Prev() {
				fv, err := readVersion(k, v)
				if err != nil {
					return err
				}
				vs = append(vs, fv)
			}
		}
		if len(vs) == 0 {
			v := versionOf(fn, 1)
			v.Unreadable = fn.Unreadable
			vs = []FunctionVersion{v}
		}
		return nil
	})
	if err != nil {
		return nil, boltFail(err, "versions of function %s/%s", module, name)
	}
	return vs, nil
}

// PruneFunctionVersions implements Store.
func (e *Embedded) PruneFunctionVersions(ctx context.Context, module, name string, keep int) ([]string, error) {
	removed := []string{}
	err := e.updateThen(ctx, func(tx *bolt.Tx) error {
		fb, err := moduleBucket(tx, module)
		if err != nil {
			return err
		}
		if fb.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		b, err := functionVersions(tx, module, name, false)
		if err != nil || b == nil {
			return err
		}
		var old [][]byte
		c := b.Cursor()
		kept := 0
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if kept < keepVersions(keep) {
				kept++
				continue
			}
			fv, err := readVersion(k, v)
			if err != nil {
				return err
			}
			removed = append(removed, fv.Digest)
			old = append(old, bytes.Clone(k))
		}
		for i, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := dropCodeRef(tx, removed[i]); err != nil {
				return err
			}
		}
		return nil
	}, func() []Change {
		if len(removed) == 0 {
			return nil
		}
		return []Change{{Kind: ChangeFunctions, Key: module + "/" + name}}
	})
	if err != nil {
		return nil, boltFail(err, "prune versions of function %s/%s", module, name)
	}
	return removed, nil
}

// KeptDigests implements Store: one read transaction over every
// function's versions bucket, decoding only each record's digest.
func (e *Embedded) KeptDigests(ctx context.Context, n int) (map[string][]string, error) {
	out := map[string][]string{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketModules).ForEach(func(module, _ []byte) error {
			fb, err := moduleBucket(tx, string(module))
			if err != nil {
				return err
			}
			return fb.ForEach(func(name, _ []byte) error {
				b, err := functionVersions(tx, string(module), string(name), false)
				if err != nil || b == nil {
					return err
				}
				fn, err := getFunction(fb, string(module), string(name))
				if err != nil {
					return err
				}
				var keep []string
				c := b.Cursor()
				for k, v := c.Last(); k != nil && len(keep) < n; k, v = c.Prev() {
					var r struct {
						Digest string `json:"digest"`
					}
					if err := json.Unmarshal(v, &r); err != nil {
						return fmt.Errorf("version %x of %s/%s: %w", k, module, name, err)
					}
					keep = keepDigestsOf(keep, fn.Digest, r.Digest, n)
				}
				if len(keep) > 0 {
					out[string(module)+"/"+string(name)] = keep
				}
				return nil
			})
		})
	})
	if err != nil {
		return nil, boltFail(err, "kept digests")
	}
	return out, nil
}
