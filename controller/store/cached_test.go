package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// manualFeed is a store whose change feed the test drives (a unit seam:
// the real feeds are tested in the contract tests and across controllers).
type manualFeed struct {
	store.Store
	changes chan store.Change
}

func (m *manualFeed) WatchChanges(ctx context.Context, fn func(store.Change)) error {
	fn(store.Change{Kind: store.ChangeAll})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ch := <-m.changes:
			fn(ch)
		}
	}
}

// countingStore counts the reads that reach it.
type countingStore struct {
	store.Store
	fnReads, tokenReads, ownerReads, lists atomic.Int64
}

func (c *countingStore) ListFunctions(ctx context.Context) ([]store.Function, error) {
	c.lists.Add(1)
	return c.Store.ListFunctions(ctx)
}

func (c *countingStore) GetFunction(ctx context.Context, m, n string) (store.Function, error) {
	c.fnReads.Add(1)
	return c.Store.GetFunction(ctx, m, n)
}

func (c *countingStore) SubjectByTokenHash(ctx context.Context, h []byte) (store.Subject, error) {
	c.tokenReads.Add(1)
	return c.Store.SubjectByTokenHash(ctx, h)
}

func (c *countingStore) ModuleOwner(ctx context.Context, n string) (string, error) {
	c.ownerReads.Add(1)
	return c.Store.ModuleOwner(ctx, n)
}

func cachedOver(t *testing.T, maxAge time.Duration) (*store.Cached, *countingStore, *manualFeed, store.Store) {
	t.Helper()
	raw, _ := openEmbedded(t)
	counting := &countingStore{Store: raw}
	feed := &manualFeed{Store: counting, changes: make(chan store.Change)}
	c := store.NewCached(feed, store.CacheLimits{MaxAge: maxAge})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Watch has started once the first change is taken.
	feed.changes <- store.Change{Kind: store.ChangeScripts}
	return c, counting, feed, raw
}

func TestCachedServesFromMemoryAndDropsOnChange(t *testing.T) {
	ctx := context.Background()
	c, counting, feed, raw := cachedOver(t, time.Minute)
	fn := store.Function{Module: store.DefaultModule, Name: "f", Digest: digestOf("abc"), Size: 3, ABI: "funless-v1"}
	if _, err := c.CreateFunction(ctx, fn, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		got, err := c.GetFunction(ctx, store.DefaultModule, "f")
		if err != nil || got.Digest != fn.Digest {
			t.Fatalf("GetFunction = %+v, %v", got, err)
		}
	}
	if n := counting.fnReads.Load(); n != 1 {
		t.Fatalf("%d store reads for 5 gets, want 1", n)
	}

	// Another controller updates it (straight into the store): the feed
	// says so, and the next read sees the new digest.
	fn.Digest = digestOf("abd")
	if _, err := raw.UpdateFunction(ctx, fn, []byte("abd")); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetFunction(ctx, store.DefaultModule, "f"); got.Digest == fn.Digest {
		t.Fatal("the cache saw a change nobody reported: the test cannot tell it from no caching")
	}
	feed.changes <- store.Change{Kind: store.ChangeFunctions, Key: "_/f"}
	feed.changes <- store.Change{Kind: store.ChangeScripts} // the first was handled
	if got, _ := c.GetFunction(ctx, store.DefaultModule, "f"); got.Digest != fn.Digest {
		t.Fatalf("after the change: digest %s, want %s", got.Digest, fn.Digest)
	}

	// This controller's own write is seen at once, feed or not.
	fn.Digest = digestOf("abe")
	if _, err := c.UpdateFunction(ctx, fn, []byte("abe")); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetFunction(ctx, store.DefaultModule, "f"); got.Digest != fn.Digest {
		t.Fatalf("own write: digest %s, want %s", got.Digest, fn.Digest)
	}
	if _, err := c.DeleteFunction(ctx, store.DefaultModule, "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFunction(ctx, store.DefaultModule, "f"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted function: %v, want ErrNotFound", err)
	}
}

func TestCachedTokensAndOwners(t *testing.T) {
	ctx := context.Background()
	c, counting, feed, raw := cachedOver(t, time.Minute)
	hash := []byte("0123456789abcdef0123456789abcdef")
	if _, err := c.CreateSubject(ctx, store.Subject{Name: "ann", TokenHash: hash}); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateModule(ctx, "m", "ann"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s, err := c.SubjectByTokenHash(ctx, hash); err != nil || s.Name != "ann" {
			t.Fatalf("SubjectByTokenHash = %+v, %v", s, err)
		}
		if o, err := c.ModuleOwner(ctx, "m"); err != nil || o != "ann" {
			t.Fatalf("ModuleOwner = %q, %v", o, err)
		}
	}
	if counting.tokenReads.Load() != 1 || counting.ownerReads.Load() != 1 {
		t.Fatalf("store reads: tokens %d, owners %d; want 1 each", counting.tokenReads.Load(), counting.ownerReads.Load())
	}
	// Unknown tokens are never cached: each one goes to the store.
	for i := range 4 {
		if _, err := c.SubjectByTokenHash(ctx, []byte{byte(i)}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
	}
	if n := counting.tokenReads.Load(); n != 5 {
		t.Fatalf("%d token reads after 4 unknown tokens, want 5", n)
	}
	// Another controller rotates the token: the old one stops working once
	// the feed reports it.
	if err := raw.RotateSubjectToken(ctx, "ann", []byte("fedcba9876543210fedcba9876543210")); err != nil {
		t.Fatal(err)
	}
	feed.changes <- store.Change{Kind: store.ChangeSubjects, Key: "ann"}
	feed.changes <- store.Change{Kind: store.ChangeScripts}
	if _, err := c.SubjectByTokenHash(ctx, hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotated token still works: %v", err)
	}
}

// An entry older than MaxAge is read again whatever the feed says.
func TestCachedMaxAge(t *testing.T) {
	ctx := context.Background()
	c, counting, _, _ := cachedOver(t, 50*time.Millisecond)
	if _, err := c.ModuleOwner(ctx, store.DefaultModule); err != nil {
		t.Fatal(err)
	}
	c.ModuleOwner(ctx, store.DefaultModule)
	time.Sleep(80 * time.Millisecond)
	c.ModuleOwner(ctx, store.DefaultModule)
	if n := counting.ownerReads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2 (one cached, one after MaxAge)", n)
	}
}

// The list of every function is read whole once, then patched with the
// functions changed since (each read alone), whoever changed them; a
// change that may touch many functions reads it whole again.
func TestCachedList(t *testing.T) {
	ctx := context.Background()
	c, counting, feed, raw := cachedOver(t, time.Minute)
	create := func(st store.Store, name, code string) {
		t.Helper()
		fn := store.Function{Module: store.DefaultModule, Name: name, Digest: digestOf(code), ABI: "funless-v1"}
		if _, err := st.CreateFunction(ctx, fn, []byte(code)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(lists, gets int64) {
		t.Helper()
		got, err := c.ListFunctions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := raw.ListFunctions(ctx)
		if len(got) != len(want) {
			t.Fatalf("%d functions listed, the store has %d", len(got), len(want))
		}
		for i := range got {
			if got[i].Name != want[i].Name || got[i].Digest != want[i].Digest {
				t.Fatalf("function %d: %s %s, the store has %s %s", i, got[i].Name, got[i].Digest, want[i].Name, want[i].Digest)
			}
		}
		if l, g := counting.lists.Load(), counting.fnReads.Load(); l != lists || g != gets {
			t.Fatalf("%d whole reads and %d function reads, want %d and %d", l, g, lists, gets)
		}
	}
	for _, n := range []string{"c", "a", "e"} {
		create(c, n, n)
	}
	check(1, 0)
	check(1, 0) // nothing changed: from memory

	create(c, "b", "b") // this controller's write
	check(1, 1)
	create(raw, "d", "d") // another's, through the feed
	feed.changes <- store.Change{Kind: store.ChangeFunctions, Key: "_/d"}
	feed.changes <- store.Change{Kind: store.ChangeScripts} // the first was handled
	check(1, 2)
	fn := store.Function{Module: store.DefaultModule, Name: "a", Digest: digestOf("a2"), ABI: "funless-v1"}
	if _, err := c.UpdateFunction(ctx, fn, []byte("a2")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteFunction(ctx, store.DefaultModule, "e"); err != nil {
		t.Fatal(err)
	}
	check(1, 4)
	feed.changes <- store.Change{Kind: store.ChangeModules, Key: "m"}
	feed.changes <- store.Change{Kind: store.ChangeScripts}
	check(2, 4)
}

// A store that is no ChangeFeed is never cached.
func TestCachedWithoutFeedReadsThrough(t *testing.T) {
	ctx := context.Background()
	raw, _ := openEmbedded(t)
	counting := &countingStore{Store: raw}
	c := store.NewCached(struct{ store.Store }{counting}, store.CacheLimits{})
	if err := c.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.ModuleOwner(ctx, store.DefaultModule)
	}
	if n := counting.ownerReads.Load(); n != 3 {
		t.Fatalf("%d reads, want 3", n)
	}
}

func digestOf(code string) string {
	sum := sha256.Sum256([]byte(code))
	return "sha256:" + hex.EncodeToString(sum[:])
}
