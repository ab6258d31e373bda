package storetest

import (
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// testSecrets: the SecretStore contract. Secrets are kept sealed as given,
// listed by module sorted by name, replaced by a second put, follow their
// module through a rename, go with it on delete, survive a reopen, and a
// rewrap replaces only what it expects.
func testSecrets(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ss, ok := s.(store.SecretStore)
	if !ok {
		t.Skip("the store keeps no secrets (no store.SecretStore)")
	}
	ctx := t.Context()
	_, err := ss.PutSecret(ctx, store.Secret{Module: "missing", Name: "K", KeyID: "k1", Sealed: []byte{1}})
	wantErr(t, "PutSecret in a missing module", err, store.ErrNotFound)
	_, err = ss.ListSecrets(ctx, "missing")
	wantErr(t, "ListSecrets of a missing module", err, store.ErrNotFound)
	wantErr(t, "DeleteSecret in a missing module", ss.DeleteSecret(ctx, "missing", "K"), store.ErrNotFound)

	mustCreateModule(t, s, "m")
	mustCreateModule(t, s, "other")
	got, err := ss.ListSecrets(ctx, "m")
	noErr(t, "ListSecrets of a module without secrets", err)
	equal(t, "no secrets", got, []store.Secret{})
	wantErr(t, "DeleteSecret missing", ss.DeleteSecret(ctx, "m", "K"), store.ErrNotFound)

	before := time.Now().Add(-time.Second)
	b, err := ss.PutSecret(ctx, store.Secret{Module: "m", Name: "b_KEY", KeyID: "k1", Sealed: []byte("sealed-b")})
	noErr(t, "PutSecret", err)
	if b.Updated.Before(before) || b.Updated.Location() != time.UTC || b.Updated.Nanosecond()%1000 != 0 {
		t.Fatalf("Updated %v: want the store's clock, UTC, microseconds", b.Updated)
	}
	a, err := ss.PutSecret(ctx, store.Secret{Module: "m", Name: "A_KEY", KeyID: "k1", Sealed: []byte("sealed-a")})
	noErr(t, "PutSecret", err)
	_, err = ss.PutSecret(ctx, store.Secret{Module: "other", Name: "A_KEY", KeyID: "k1", Sealed: []byte("other-a")})
	noErr(t, "PutSecret in another module", err)
	got, err = ss.ListSecrets(ctx, "m")
	noErr(t, "ListSecrets", err)
	equal(t, "ListSecrets sorted by name (bytes)", got, []store.Secret{a, b})

	a2, err := ss.PutSecret(ctx, store.Secret{Module: "m", Name: "A_KEY", KeyID: "k2", Sealed: []byte("sealed-a2")})
	noErr(t, "PutSecret replace", err)
	got, err = ss.ListSecrets(ctx, "m")
	noErr(t, "ListSecrets", err)
	equal(t, "ListSecrets after a replace", got, []store.Secret{a2, b})

	// Rewrap: only when the value is still the one expected.
	ok, err = ss.RewrapSecret(ctx, store.Secret{Module: "m", Name: "A_KEY", KeyID: "k3", Sealed: []byte("x")}, []byte("sealed-a"))
	noErr(t, "RewrapSecret stale", err)
	equal(t, "RewrapSecret of a stale value swaps", ok, false)
	ok, err = ss.RewrapSecret(ctx, store.Secret{Module: "m", Name: "A_KEY", KeyID: "k3", Sealed: []byte("rewrapped")}, []byte("sealed-a2"))
	noErr(t, "RewrapSecret", err)
	equal(t, "RewrapSecret swaps", ok, true)
	ok, err = ss.RewrapSecret(ctx, store.Secret{Module: "m", Name: "NONE", KeyID: "k3", Sealed: []byte("x")}, []byte("y"))
	noErr(t, "RewrapSecret of no secret", err)
	equal(t, "RewrapSecret of no secret swaps", ok, false)
	a3 := a2
	a3.KeyID, a3.Sealed = "k3", []byte("rewrapped")

	all, err := ss.AllSecrets(ctx)
	noErr(t, "AllSecrets", err)
	equal(t, "AllSecrets", all, []store.Secret{a3, b, {Module: "other", Name: "A_KEY", KeyID: "k1", Sealed: []byte("other-a"), Updated: all[2].Updated}})

	// Secrets follow their module through a rename.
	noErr(t, "RenameModule", s.RenameModule(ctx, "m", "m2"))
	got, err = ss.ListSecrets(ctx, "m2")
	noErr(t, "ListSecrets after a rename", err)
	a3.Module, b.Module = "m2", "m2"
	equal(t, "ListSecrets after a rename", got, []store.Secret{a3, b})
	noErr(t, "CreateModule m again", s.CreateModule(ctx, "m", ""))
	got, err = ss.ListSecrets(ctx, "m")
	noErr(t, "ListSecrets of the new m", err)
	equal(t, "a new module of the old name has none", got, []store.Secret{})

	noErr(t, "DeleteSecret", ss.DeleteSecret(ctx, "m2", "b_KEY"))
	wantErr(t, "DeleteSecret twice", ss.DeleteSecret(ctx, "m2", "b_KEY"), store.ErrNotFound)

	// They survive a reopen.
	noErr(t, "Close", s.Close())
	s = reopen(t)
	ss = s.(store.SecretStore)
	got, err = ss.ListSecrets(ctx, "m2")
	noErr(t, "ListSecrets after a reopen", err)
	equal(t, "ListSecrets after a reopen", got, []store.Secret{a3})

	// Deleting the module deletes them; a new module of its name has none.
	noErr(t, "DeleteModule", s.DeleteModule(ctx, "m2"))
	noErr(t, "CreateModule m2 again", s.CreateModule(ctx, "m2", ""))
	got, err = ss.ListSecrets(ctx, "m2")
	noErr(t, "ListSecrets after delete and create", err)
	equal(t, "secrets after the module was deleted", got, []store.Secret{})
	all, err = ss.AllSecrets(ctx)
	noErr(t, "AllSecrets", err)
	if len(all) != 1 || all[0].Module != "other" {
		t.Fatalf("AllSecrets after the delete: %+v; want other's only", all)
	}
}
