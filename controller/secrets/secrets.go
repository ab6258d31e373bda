package secrets

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/sealbox"
	"github.com/wispfn/wisp/protocol"
)

// Bounds of a secret.
const (
	// MaxValueBytes bounds a secret's value.
	MaxValueBytes = 16 << 10
	// MaxNameBytes bounds a secret's name (an environment variable name).
	MaxNameBytes = 128
	// MaxPerModule bounds how many secrets one module holds.
	MaxPerModule = 256
	// DefaultCacheTTL is how long opened values are kept in memory.
	DefaultCacheTTL = 2 * time.Second
)

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var (
	// ErrInvalid: a bad secret name or value (the API's 400).
	ErrInvalid = errors.New("invalid secret")
	// ErrTooMany: the module holds MaxPerModule secrets already.
	ErrTooMany = errors.New("too many secrets in the module")
	// ErrUnreadable: a stored value does not open with the keys this
	// controller holds (a missing old key, or a corrupt or moved row).
	ErrUnreadable = errors.New("a stored secret cannot be decrypted with the keys this controller holds")
)

// MissingError names the secrets a function's configuration refers to
// that its module does not hold.
type MissingError struct {
	Module string
	Names  []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("module %s has no secret %s", e.Module, strings.Join(e.Names, ", "))
}

// Unwrap makes a MissingError an ErrInvalid.
func (e *MissingError) Unwrap() error { return ErrInvalid }

// CheckName checks a secret's name: an environment variable name.
func CheckName(name string) error {
	if len(name) > MaxNameBytes || !nameRE.MatchString(name) {
		return fmt.Errorf("%w: name %q: want letters, digits and _ (not first a digit), at most %d bytes", ErrInvalid, name, MaxNameBytes)
	}
	return nil
}

// CheckValue checks a secret's value: at most MaxValueBytes, no NUL byte
// (it becomes an environment variable). The error never holds the value.
func CheckValue(value []byte) error {
	if len(value) > MaxValueBytes {
		return fmt.Errorf("%w: the value is %d bytes; at most %d", ErrInvalid, len(value), MaxValueBytes)
	}
	if slices.Contains(value, 0) {
		return fmt.Errorf("%w: the value holds a NUL byte", ErrInvalid)
	}
	return nil
}

// Info is what may be shown of a secret: never its value.
type Info struct {
	Name    string
	Updated time.Time
}

// Service keeps secrets in a store.SecretStore, sealed with a key ring.
// Safe for concurrent use.
type Service struct {
	store store.SecretStore
	ring  *sealbox.Ring
	ttl   time.Duration
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cached // by module
}

type cached struct {
	at     time.Time
	values map[string][]byte
}

// New returns a Service; it does no I/O. ttl <= 0 means DefaultCacheTTL.
// Opened values stay in memory that long: a value changed through
// another controller on the same database reaches dispatches within it.
func New(st store.SecretStore, ring *sealbox.Ring, ttl time.Duration) *Service {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	return &Service{store: st, ring: ring, ttl: ttl, now: time.Now, cache: map[string]cached{}}
}

// aad binds a sealed value to its place.
func aad(module, name string) []byte {
	return []byte("wisp secret\x00" + module + "\x00" + name)
}

// Put creates or replaces a secret. ErrInvalid, ErrTooMany,
// store.ErrNotFound (no module).
func (s *Service) Put(ctx context.Context, module, name string, value []byte) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	if err := CheckValue(value); err != nil {
		return Info{}, err
	}
	have, err := s.store.ListSecrets(ctx, module)
	if err != nil {
		return Info{}, fmt.Errorf("secrets: put %s/%s: %w", module, name, err)
	}
	if len(have) >= MaxPerModule && !slices.ContainsFunc(have, func(x store.Secret) bool { return x.Name == name }) {
		return Info{}, fmt.Errorf("%w: module %s holds %d secrets, the limit", ErrTooMany, module, len(have))
	}
	keyID, sealed := s.ring.Seal(value, aad(module, name))
	got, err := s.store.PutSecret(ctx, store.Secret{Module: module, Name: name, KeyID: keyID, Sealed: sealed})
	s.forget(module)
	if err != nil {
		return Info{}, fmt.Errorf("secrets: put %s/%s: %w", module, name, err)
	}
	return Info{Name: got.Name, Updated: got.Updated}, nil
}

// List gives the names and times of a module's secrets, sorted by name.
// store.ErrNotFound.
func (s *Service) List(ctx context.Context, module string) ([]Info, error) {
	all, err := s.store.ListSecrets(ctx, module)
	if err != nil {
		return nil, fmt.Errorf("secrets: list %s: %w", module, err)
	}
	out := make([]Info, len(all))
	for i, x := range all {
		out[i] = Info{Name: x.Name, Updated: x.Updated}
	}
	return out, nil
}

// Delete removes a secret. store.ErrNotFound. Whether functions still use
// it is the caller's question (UsedBy).
func (s *Service) Delete(ctx context.Context, module, name string) error {
	err := s.store.DeleteSecret(ctx, module, name)
	s.forget(module)
	if err != nil {
		return fmt.Errorf("secrets: delete %s/%s: %w", module, name, err)
	}
	return nil
}

// Missing returns those of names the module does not hold, in their
// order; nil when it holds them all (a function's configuration may then
// name them). A module that does not exist holds none.
func (s *Service) Missing(ctx context.Context, module string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	all, err := s.store.ListSecrets(ctx, module)
	if errors.Is(err, store.ErrNotFound) {
		return slices.Clone(names), nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: list %s: %w", module, err)
	}
	var missing []string
	for _, n := range names {
		if !slices.ContainsFunc(all, func(x store.Secret) bool { return x.Name == n }) {
			missing = append(missing, n)
		}
	}
	return missing, nil
}

// CheckRefs is the check a function create or update makes of its
// configuration's secrets: a *MissingError (an ErrInvalid) naming those
// the module does not hold.
func (s *Service) CheckRefs(ctx context.Context, module string, names []string) error {
	missing, err := s.Missing(ctx, module, names)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingError{Module: module, Names: missing}
	}
	return nil
}

// Values opens the named secrets of a module, in the order of names, for
// a dispatch or a desired set. A name the module does not hold (deleted
// since the function was configured) is a *MissingError; a value that does
// not open, ErrUnreadable. Neither error holds a value.
func (s *Service) Values(ctx context.Context, module string, names []string) ([]protocol.Secret, error) {
	if len(names) == 0 {
		return nil, nil
	}
	values, err := s.opened(ctx, module)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.Secret, 0, len(names))
	var missing []string
	for _, n := range names {
		v, ok := values[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		out = append(out, protocol.Secret{Name: n, Value: slices.Clone(v)})
	}
	if len(missing) > 0 {
		return nil, &MissingError{Module: module, Names: missing}
	}
	return out, nil
}

// opened returns a module's values, from the cache when fresh.
func (s *Service) opened(ctx context.Context, module string) (map[string][]byte, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[module]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < s.ttl {
		return c.values, nil
	}
	all, err := s.store.ListSecrets(ctx, module)
	if errors.Is(err, store.ErrNotFound) {
		all, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: read %s: %w", module, err)
	}
	values := make(map[string][]byte, len(all))
	for _, x := range all {
		v, err := s.ring.Open(x.KeyID, x.Sealed, aad(module, x.Name))
		if err != nil {
			return nil, fmt.Errorf("%w: secret %s of module %s (key %s): %w", ErrUnreadable, x.Name, module, x.KeyID, err)
		}
		values[x.Name] = v
	}
	s.mu.Lock()
	s.cache[module] = cached{at: now, values: values}
	s.mu.Unlock()
	return values, nil
}

// Forget drops what the cache holds of a module (its deletion: a new
// module of its name must not see the old one's values).
func (s *Service) Forget(module string) { s.forget(module) }

func (s *Service) forget(module string) {
	s.mu.Lock()
	delete(s.cache, module)
	s.mu.Unlock()
}

// RotateReport is what Rotate did.
type RotateReport struct {
	// Resealed counts the values sealed again under the current key.
	Resealed int
	// Current counts the values already under it.
	Current int
	// Changed counts the values set or deleted meanwhile, left as they are
	// (they were sealed under the current key by whoever set them).
	Changed int
}

// Rotate seals every value not under the ring's current key again under
// it, one at a time, never overwriting a value set meanwhile. After it
// the older keys are needed no more. ErrUnreadable (nothing more is done)
// when a value opens with no key of the ring.
func (s *Service) Rotate(ctx context.Context) (RotateReport, error) {
	var rep RotateReport
	all, err := s.store.AllSecrets(ctx)
	if err != nil {
		return rep, fmt.Errorf("secrets: rotate: %w", err)
	}
	cur := s.ring.CurrentID()
	for _, x := range all {
		if x.KeyID == cur {
			rep.Current++
			continue
		}
		v, err := s.ring.Open(x.KeyID, x.Sealed, aad(x.Module, x.Name))
		if err != nil {
			return rep, fmt.Errorf("%w: secret %s of module %s (key %s): %w", ErrUnreadable, x.Name, x.Module, x.KeyID, err)
		}
		keyID, sealed := s.ring.Seal(v, aad(x.Module, x.Name))
		clear(v)
		ok, err := s.store.RewrapSecret(ctx, store.Secret{Module: x.Module, Name: x.Name, KeyID: keyID, Sealed: sealed}, x.Sealed)
		if err != nil {
			return rep, fmt.Errorf("secrets: rotate: %w", err)
		}
		if ok {
			rep.Resealed++
		} else {
			rep.Changed++
		}
		s.forget(x.Module)
	}
	return rep, nil
}

// UsedBy returns the names of the functions of module, among fns, whose
// configuration names the secret, sorted: deleting it would leave them
// without it (the API refuses that with 409).
func UsedBy(fns []store.Function, module, name string) []string {
	var out []string
	for _, f := range fns {
		if f.Module == module && slices.Contains(f.Spec.Config.Secrets, name) {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Env renders secrets as environment entries, "NAME=value" each.
func Env(secrets []protocol.Secret) []string {
	out := make([]string, len(secrets))
	for i, x := range secrets {
		out[i] = x.Name + "=" + string(x.Value)
	}
	return out
}
