package state

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/internal/sealbox"
	"github.com/wispfn/wisp/protocol"
)

// SecretsKeyFile is the file, beside the state file, of the key that seals
// the desired functions' secret values in it: a copy of the bbolt file
// alone does not reveal them.
const SecretsKeyFile = "secrets.key"

// bucketDesiredSecrets holds, per desired function (desiredKey), its
// secret values sealed with the agent's key: the key id, a NUL, then
// sealbox's nonce and ciphertext of an encoded DesiredFunction holding
// only Secrets. bucketDesired holds the functions without them.
var bucketDesiredSecrets = []byte("desiredsecrets")

// ErrSecretsKey: the sealed secrets do not open with the agent's key file
// (it was replaced or lost): the functions run without them until the
// controller sends the desired set again.
var ErrSecretsKey = errors.New("the desired functions' secrets do not open with this agent's key")

// secretsKey returns the agent's key, reading its file, or making it when
// create is set and there is none.
func (s *State) secretsKey(create bool) (*sealbox.Key, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key != nil {
		return s.key, nil
	}
	var k *sealbox.Key
	var err error
	if create {
		k, _, err = sealbox.LoadOrCreateKeyFile(s.keyPath)
	} else {
		k, err = sealbox.ReadKeyFile(s.keyPath)
	}
	if err != nil {
		return nil, err
	}
	s.key = k
	return k, nil
}

func secretsAAD(key []byte) []byte {
	return append([]byte("wisp agent secrets\x00"), key...)
}

// putSecrets seals f's secrets into b (or deletes what b held for f).
func (s *State) putSecrets(b *bolt.Bucket, f *protocol.DesiredFunction) error {
	key := desiredKey(f.Module, f.Name)
	if len(f.Secrets) == 0 {
		return b.Delete(key)
	}
	k, err := s.secretsKey(true)
	if err != nil {
		return fmt.Errorf("agent secrets key: %w", err)
	}
	plain := (&protocol.DesiredSet{Functions: []protocol.DesiredFunction{{Secrets: f.Secrets}}}).Append(nil)
	v := append([]byte(k.ID()+"\x00"), k.Seal(plain, secretsAAD(key))...)
	clear(plain)
	return b.Put(key, v)
}

// openSecrets fills f.Secrets from b.
func (s *State) openSecrets(b *bolt.Bucket, f *protocol.DesiredFunction) error {
	if b == nil {
		return nil
	}
	key := desiredKey(f.Module, f.Name)
	v := b.Get(key)
	if v == nil {
		return nil
	}
	id, sealed, ok := bytes.Cut(v, []byte{0})
	if !ok {
		return fmt.Errorf("%w: a corrupt entry for %s", ErrSecretsKey, key)
	}
	k, err := s.secretsKey(false)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s is missing", ErrSecretsKey, filepath.Base(s.keyPath))
	}
	if err != nil {
		return err
	}
	if string(id) != k.ID() {
		return fmt.Errorf("%w: sealed with key %s, the file holds %s", ErrSecretsKey, id, k.ID())
	}
	plain, err := k.Open(sealed, secretsAAD(key))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSecretsKey, key, err)
	}
	var set protocol.DesiredSet
	if err := set.UnmarshalBinary(plain); err != nil || len(set.Functions) != 1 {
		return fmt.Errorf("%w: %s: corrupt", ErrSecretsKey, key)
	}
	f.Secrets = set.Functions[0].Secrets
	return nil
}

// DesiredEnv is the environment a desired function runs with on the
// edge paths (local API, local triggers): its configured env, then its
// secrets, "NAME=value" each, as the controller's dispatch gives it.
func DesiredEnv(f protocol.DesiredFunction) []string {
	if len(f.Env) == 0 && len(f.Secrets) == 0 {
		return nil
	}
	env := make([]string, 0, len(f.Env)+len(f.Secrets))
	env = append(env, f.Env...)
	for _, x := range f.Secrets {
		env = append(env, x.Name+"="+string(x.Value))
	}
	return env
}
