package secrets

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/wispfn/wisp/internal/sealbox"
)

// KeyFileName is the key's file in the data dir.
const KeyFileName = "secrets.key"

// KeyEnv and OldKeysEnv are the environment variables LoadRing reads:
// the current key, and older keys to read values not yet re-sealed
// (comma-separated), each as base64 of 32 bytes.
const (
	KeyEnv     = "WISP_SECRETS_KEY"
	OldKeysEnv = "WISP_SECRETS_OLD_KEYS"
)

// KeySource says where LoadRing finds the keys.
type KeySource struct {
	// File is the current key's file; "" means <DataDir>/secrets.key. It
	// is created (0600, 32 random bytes) when missing, unless Env gives
	// the key.
	File    string
	DataDir string
	// OldFiles are files of older keys, read only to open values.
	OldFiles []string
	// Getenv reads KeyEnv and OldKeysEnv; nil reads none.
	Getenv func(string) string
}

// LoadRing builds the controller's key ring: the current key from
// WISP_SECRETS_KEY when set, else from its file (made on first start),
// and the older keys from the files and WISP_SECRETS_OLD_KEYS. created
// says that the key file was made now.
func LoadRing(src KeySource) (ring *sealbox.Ring, created bool, err error) {
	getenv := src.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var cur *sealbox.Key
	if v := getenv(KeyEnv); v != "" {
		if cur, err = sealbox.ParseKey(v); err != nil {
			return nil, false, fmt.Errorf("secrets: %s: %w", KeyEnv, err)
		}
	} else {
		file := src.File
		if file == "" {
			file = filepath.Join(src.DataDir, KeyFileName)
		}
		if cur, created, err = sealbox.LoadOrCreateKeyFile(file); err != nil {
			return nil, false, fmt.Errorf("secrets: %w", err)
		}
	}
	var old []*sealbox.Key
	for _, f := range src.OldFiles {
		k, err := sealbox.ReadKeyFile(f)
		if err != nil {
			return nil, false, fmt.Errorf("secrets: old key: %w", err)
		}
		old = append(old, k)
	}
	if v := getenv(OldKeysEnv); v != "" {
		for i, part := range strings.Split(v, ",") {
			k, err := sealbox.ParseKey(part)
			if err != nil {
				return nil, false, fmt.Errorf("secrets: %s, key %d: %w", OldKeysEnv, i+1, err)
			}
			old = append(old, k)
		}
	}
	return sealbox.NewRing(cur, old...), created, nil
}
