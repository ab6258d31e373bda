package store

import (
	"context"
	"time"
)

// Secret is one module-scoped secret as the store keeps it: sealed. The
// store never sees a value: controller/secrets encrypts it (AES-256-GCM,
// the (module, name) pair bound as additional data) before PutSecret and
// decrypts it after reading it back. KeyID names the key that sealed it,
// so that the key can be rotated.
type Secret struct {
	Module string
	Name   string
	// KeyID names the encryption key Sealed was made with.
	KeyID string
	// Sealed is the nonce followed by the ciphertext and its tag.
	Sealed []byte
	// Updated is set by the store on PutSecret (not by RewrapSecret).
	Updated time.Time
}

// SecretStore keeps module-scoped secrets. Both stores implement it; it
// is an interface of its own, beside Store, so that test doubles of Store
// need not. Secrets belong to their module by its identity, not its name:
// RenameModule moves them and DeleteModule deletes them.
type SecretStore interface {
	// PutSecret creates or replaces s (its Module and Name) and returns it
	// with Updated set. ErrNotFound if the module does not exist.
	PutSecret(ctx context.Context, s Secret) (Secret, error)
	// ListSecrets returns a module's secrets, sealed, sorted by name.
	// ErrNotFound if the module does not exist.
	ListSecrets(ctx context.Context, module string) ([]Secret, error)
	// DeleteSecret fails with ErrNotFound (module or secret).
	DeleteSecret(ctx context.Context, module, name string) error
	// AllSecrets returns every secret of every module, sorted by module
	// then name (for key rotation).
	AllSecrets(ctx context.Context) ([]Secret, error)
	// RewrapSecret replaces the KeyID and Sealed of the secret s names,
	// keeping Updated, only if its Sealed is still prev (a value set
	// meanwhile is not overwritten); it reports whether it replaced it.
	RewrapSecret(ctx context.Context, s Secret, prev []byte) (bool, error)
}

var (
	_ SecretStore = (*Postgres)(nil)
	_ SecretStore = (*Embedded)(nil)
)
