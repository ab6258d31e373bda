// Package sealbox seals small values at rest with AES-256-GCM: a random
// 96-bit nonce per value, the caller's additional data bound to it (the
// controller binds a secret's (module, name), the agent its function), and
// a key id so that values sealed under an older key can still be opened
// after a rotation. Keys are 32 random bytes, kept in a file of their own
// (0600) or given as base64.
//
// It imports only the standard library: the controller (controller/secrets)
// and the agent (agent/state) both use it. It must never log, and its
// errors never hold a value, sealed or open.
package sealbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

var (
	// ErrUnknownKey: the value was sealed with a key the ring does not hold.
	ErrUnknownKey = errors.New("sealbox: sealed with an unknown key")
	// ErrOpen: the value does not open with its key and additional data
	// (corrupt, or moved to another place than it was sealed for).
	ErrOpen = errors.New("sealbox: the value does not open (corrupt, or sealed for another name)")
)

// Key is one AES-256-GCM key with its id.
type Key struct {
	id   string
	aead cipher.AEAD
}

// NewKey makes a Key of raw, which must be KeySize bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("sealbox: a key is %d bytes, not %d", KeySize, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	sum := sha256.Sum256(append([]byte("wisp sealbox key id\x00"), raw...))
	return &Key{id: hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// ID names the key without revealing it: 16 hex digits of a hash of it.
func (k *Key) ID() string { return k.id }

// Seal returns a fresh nonce followed by the ciphertext of plaintext and
// its tag, bound to aad.
func (k *Key) Seal(plaintext, aad []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("sealbox: no randomness: " + err.Error()) // crypto/rand never fails on supported systems
	}
	return k.aead.Seal(nonce, nonce, plaintext, aad)
}

// Open opens what Seal made with the same aad. ErrOpen.
func (k *Key) Open(sealed, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := k.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// ParseKey reads a key given as base64 (standard or URL alphabet, padded
// or not) of KeySize bytes.
func ParseKey(text string) (*Key, error) {
	text = strings.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(text); err == nil {
			return NewKey(raw)
		}
	}
	return nil, errors.New("sealbox: the key is not base64")
}

// ReadKeyFile reads a key file: KeySize raw bytes, or their base64 on one
// line. A file others may read is refused.
func ReadKeyFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sealbox: key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sealbox: key file %s has mode %v: others may read it; chmod 600 it", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sealbox: key file: %w", err)
	}
	if len(raw) == KeySize {
		return NewKey(raw)
	}
	k, err := ParseKey(string(bytes.TrimSpace(raw)))
	if err != nil {
		return nil, fmt.Errorf("sealbox: key file %s: want %d bytes or their base64", path, KeySize)
	}
	return k, nil
}

// LoadOrCreateKeyFile reads the key file at path, or, when there is none,
// creates it (mode 0600, its directory 0700 if missing) with KeySize random
// bytes. created says which.
func LoadOrCreateKeyFile(path string) (k *Key, created bool, err error) {
	k, err = ReadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, fmt.Errorf("sealbox: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("sealbox: key file: %w", err)
	}
	// O_EXCL: two processes starting at once do not both write a key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		k, err = ReadKeyFile(path)
		return k, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("sealbox: key file: %w", err)
	}
	_, werr := f.Write(raw)
	serr := f.Sync()
	if cerr := f.Close(); werr == nil {
		werr = errors.Join(serr, cerr)
	}
	if werr != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("sealbox: key file: %w", werr)
	}
	k, err = NewKey(raw)
	return k, err == nil, err
}

// Ring is a current key, which seals, and older keys, which only open.
type Ring struct {
	current *Key
	keys    map[string]*Key
}

// NewRing makes a ring sealing with current and opening with it and old.
func NewRing(current *Key, old ...*Key) *Ring {
	r := &Ring{current: current, keys: map[string]*Key{current.ID(): current}}
	for _, k := range old {
		if k != nil {
			if _, ok := r.keys[k.ID()]; !ok {
				r.keys[k.ID()] = k
			}
		}
	}
	return r
}

// CurrentID is the id of the key that seals.
func (r *Ring) CurrentID() string { return r.current.ID() }

// Seal seals with the current key and says which.
func (r *Ring) Seal(plaintext, aad []byte) (keyID string, sealed []byte) {
	return r.current.ID(), r.current.Seal(plaintext, aad)
}

// Open opens a value sealed with the key keyID. ErrUnknownKey, ErrOpen.
func (r *Ring) Open(keyID string, sealed, aad []byte) ([]byte, error) {
	k, ok := r.keys[keyID]
	if !ok {
		return nil, ErrUnknownKey
	}
	return k.Open(sealed, aad)
}
