package fleet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/sealbox"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

func identityStore(t *testing.T) *store.Postgres {
	t.Helper()
	dsn := testpg.Schema(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRing(t *testing.T, old ...*sealbox.Key) (*sealbox.Ring, *sealbox.Key) {
	t.Helper()
	k, _, err := sealbox.LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	return sealbox.NewRing(k, old...), k
}

// TestSharedIdentityConcurrentFirstStarts: controllers with empty data
// dirs start at once on an empty database; they all end with one
// identity, and each keeps a copy of it in its data dir.
func TestSharedIdentityConcurrentFirstStarts(t *testing.T) {
	t.Parallel()
	st := identityStore(t)
	ring, _ := newRing(t)
	const n = 6
	ids := make([]Identity, n)
	dirs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		dirs[i] = t.TempDir()
		wg.Go(func() {
			id, err := SharedIdentity(t.Context(), st, dirs[i], ring, nil)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if ids[i].Fingerprint != ids[0].Fingerprint {
			t.Errorf("controller %d has %s, controller 0 %s", i, ids[i], ids[0])
		}
	}
	for _, d := range dirs { // each data dir has a copy of the cluster's
		if copied, err := LoadOrCreateIdentity(d); err != nil || copied.Fingerprint != ids[0].Fingerprint {
			t.Errorf("%s: the data dir holds %s (%v), want a copy of the cluster's %s", d, copied, err, ids[0])
		}
		if fi, err := os.Stat(filepath.Join(d, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file %v, %v", d, fi, err)
		}
	}
	// A later controller gets the same, and so does a restart.
	again, err := SharedIdentity(t.Context(), st, t.TempDir(), ring, nil)
	if err != nil || again.Fingerprint != ids[0].Fingerprint {
		t.Errorf("a later controller: %s, %v; want %s", again, err, ids[0])
	}
}

// TestSharedIdentityUploadsDataDir: the first controller on an empty
// database had a data dir identity (agents pinned it): the cluster keeps
// that one; a controller whose data dir holds another is refused with
// both fingerprints and what to do; after the files are moved away it
// starts with the cluster's.
func TestSharedIdentityUploadsDataDir(t *testing.T) {
	t.Parallel()
	st := identityStore(t)
	ring, _ := newRing(t)
	first := t.TempDir()
	old, err := LoadOrCreateIdentity(first) // the single controller's identity before the cluster
	if err != nil {
		t.Fatal(err)
	}
	id, err := SharedIdentity(t.Context(), st, first, ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.Fingerprint != old.Fingerprint {
		t.Fatalf("cluster identity %s, want the data dir's %s", id, old)
	}

	other := t.TempDir()
	stray, err := LoadOrCreateIdentity(other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = SharedIdentity(t.Context(), st, other, ring, nil)
	if !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("a data dir with another identity: %v, want ErrIdentityMismatch", err)
	}
	for _, want := range []string{stray.String(), id.String(), "controller.crt", "controller.key", "new join token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the mismatch error does not say %q:\n%v", want, err)
		}
	}
	t.Logf("mismatch: %v", err)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Rename(filepath.Join(other, f), filepath.Join(t.TempDir(), f)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := SharedIdentity(t.Context(), st, other, ring, nil); err != nil || got.Fingerprint != id.Fingerprint {
		t.Errorf("after moving the files away: %s, %v; want %s", got, err, id)
	}
}

// TestSharedIdentityConcurrentDataDirs: two controllers with different
// data dir identities start at once on an empty database: one stores its
// own and starts, the other is refused.
func TestSharedIdentityConcurrentDataDirs(t *testing.T) {
	t.Parallel()
	st := identityStore(t)
	ring, _ := newRing(t)
	var errs [2]error
	var wg sync.WaitGroup
	for i := range errs {
		dir := t.TempDir()
		if _, err := LoadOrCreateIdentity(dir); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _, errs[i] = SharedIdentity(t.Context(), st, dir, ring, nil) })
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrIdentityMismatch):
			refused++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Errorf("%d started, %d refused; want one of each", ok, refused)
	}
}

// TestSharedIdentityWrongSecretsKey: a controller whose secrets key is
// not the cluster's cannot open the identity and is refused with a message
// saying the controllers must share WISP_SECRETS_KEY, unless its data dir
// holds the cluster's identity.
func TestSharedIdentityWrongSecretsKey(t *testing.T) {
	t.Parallel()
	st := identityStore(t)
	ring, _ := newRing(t)
	if _, err := SharedIdentity(t.Context(), st, t.TempDir(), ring, nil); err != nil {
		t.Fatal(err)
	}
	other, _ := newRing(t)
	_, err := SharedIdentity(t.Context(), st, t.TempDir(), other, nil)
	if !errors.Is(err, ErrIdentitySealed) {
		t.Fatalf("another secrets key: %v, want ErrIdentitySealed", err)
	}
	for _, want := range []string{"WISP_SECRETS_KEY", ring.CurrentID(), other.CurrentID()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	t.Logf("wrong key: %v", err)

	// The data dir holds the cluster's identity itself (a mounted Secret):
	// it is served, the wrong key notwithstanding.
	dir := t.TempDir()
	want, err := SharedIdentity(t.Context(), st, dir, ring, nil) // copies it into dir
	if err != nil {
		t.Fatal(err)
	}
	if got, err := SharedIdentity(t.Context(), st, dir, other, nil); err != nil || got.Fingerprint != want.Fingerprint {
		t.Errorf("another secrets key, the identity in the data dir: %s, %v; want %s", got, err, want)
	}
}

// TestSharedIdentityResealed: after a secrets key rotation, a controller
// given the new key and the old one seals the identity again under the
// new key, after which the old key is not needed.
func TestSharedIdentityResealed(t *testing.T) {
	t.Parallel()
	st := identityStore(t)
	oldRing, oldKey := newRing(t)
	id, err := SharedIdentity(t.Context(), st, t.TempDir(), oldRing, nil)
	if err != nil {
		t.Fatal(err)
	}
	rotated, newKey := newRing(t, oldKey)
	if got, err := SharedIdentity(t.Context(), st, t.TempDir(), rotated, nil); err != nil || got.Fingerprint != id.Fingerprint {
		t.Fatalf("with the rotated ring: %s, %v", got, err)
	}
	stored, err := st.LoadIdentity(t.Context())
	if err != nil || stored.KeyID != newKey.ID() {
		t.Fatalf("stored under key %q (%v), want the new %q", stored.KeyID, err, newKey.ID())
	}
	if got, err := SharedIdentity(t.Context(), st, t.TempDir(), sealbox.NewRing(newKey), nil); err != nil || got.Fingerprint != id.Fingerprint {
		t.Errorf("with the new key alone: %s, %v", got, err)
	}
	if again, err := ResealIdentity(t.Context(), st, sealbox.NewRing(newKey)); err != nil || again {
		t.Errorf("ResealIdentity under the current key: %v, %v; want false, nil", again, err)
	}
}
