package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// TestPostgresLeases: a lease is taken, renewed by its owner (same
// epoch), refused to another while live, released, then taken by the
// other (next epoch).
func TestPostgresLeases(t *testing.T) {
	t.Parallel()
	p := openPostgresDSN(t, pgSchema(t))
	ctx := t.Context()
	take := func(owner string, ttl time.Duration) (int64, bool) {
		t.Helper()
		epoch, held, err := p.TakeLease(ctx, "l", owner, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return epoch, held
	}
	if e, ok := take("a", 5*time.Second); !ok || e != 1 {
		t.Fatalf("first take: %d %v", e, ok)
	}
	if e, ok := take("a", 5*time.Second); !ok || e != 1 {
		t.Fatalf("renewal: %d %v", e, ok)
	}
	if _, ok := take("b", 5*time.Second); ok {
		t.Fatal("b took a's live lease")
	}
	if ok, err := p.ReleaseLease(ctx, "l", "b"); err != nil || ok {
		t.Fatalf("b released a's lease: %v %v", ok, err)
	}
	if ok, err := p.ReleaseLease(ctx, "l", "a"); err != nil || !ok {
		t.Fatalf("a's release: %v %v", ok, err)
	}
	if e, ok := take("b", 5*time.Second); !ok || e != 2 {
		t.Fatalf("b after the release: %d %v", e, ok)
	}
	ls, err := p.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Owner != "b" || !ls[0].Live || ls[0].Expires.Sub(ls[0].Acquired) != 5*time.Second {
		t.Fatalf("leases: %+v %v", ls, err)
	}
	// An expired lease is anyone's; a TTL over MaxLeaseTTL is cut to it.
	if e, ok := take("b", time.Millisecond); !ok || e != 2 {
		t.Fatalf("short renewal: %d %v", e, ok)
	}
	time.Sleep(5 * time.Millisecond)
	if e, ok := take("a", time.Hour); !ok || e != 3 {
		t.Fatalf("a after b's expired: %d %v", e, ok)
	}
	if ls, _ := p.Leases(ctx); ls[0].Expires.Sub(ls[0].Acquired) != store.MaxLeaseTTL {
		t.Errorf("a lease of an hour lasts %s, want MaxLeaseTTL", ls[0].Expires.Sub(ls[0].Acquired))
	}
}

// TestPostgresIdentityRow: the first identity stored stays; a second
// store returns the first; a rewrap applies only over the value read.
func TestPostgresIdentityRow(t *testing.T) {
	t.Parallel()
	p := openPostgresDSN(t, pgSchema(t))
	ctx := t.Context()
	if _, err := p.LoadIdentity(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("empty database: %v", err)
	}
	first := store.SealedIdentity{CertPEM: []byte("cert1"), KeyID: "k1", SealedKey: []byte("sealed1")}
	got, err := p.StoreIdentity(ctx, first)
	if err != nil || string(got.SealedKey) != "sealed1" || got.Created.IsZero() {
		t.Fatalf("first store: %+v %v", got, err)
	}
	got, err = p.StoreIdentity(ctx, store.SealedIdentity{CertPEM: []byte("cert2"), KeyID: "k2", SealedKey: []byte("sealed2")})
	if err != nil || string(got.CertPEM) != "cert1" {
		t.Fatalf("second store: %+v %v", got, err)
	}
	if ok, err := p.RewrapIdentity(ctx, "k3", []byte("sealed3"), []byte("stale")); err != nil || ok {
		t.Fatalf("rewrap over a stale value: %v %v", ok, err)
	}
	if ok, err := p.RewrapIdentity(ctx, "k3", []byte("sealed3"), []byte("sealed1")); err != nil || !ok {
		t.Fatalf("rewrap: %v %v", ok, err)
	}
	if got, _ := p.LoadIdentity(ctx); got.KeyID != "k3" || string(got.SealedKey) != "sealed3" || string(got.CertPEM) != "cert1" {
		t.Fatalf("after rewrap: %+v", got)
	}
}
