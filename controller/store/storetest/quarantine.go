package storetest

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

func testQuarantine(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	ctx := t.Context()
	qs, err := s.ListQuarantine(ctx)
	noErr(t, "ListQuarantine of a new store", err)
	if qs == nil || len(qs) != 0 {
		t.Fatalf("ListQuarantine of a new store = %#v, want an empty list", qs)
	}
	_, b := Code("quarantine b")
	_, a := Code("quarantine a")
	if a > b {
		a, b = b, a
	}
	since := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	before := time.Now().Add(-time.Second)
	created, err := s.QuarantineDigest(ctx, store.Quarantine{Digest: b, Reason: "died while running", Agent: agentID(1), Since: since})
	noErr(t, "QuarantineDigest b", err)
	if !created {
		t.Fatal("QuarantineDigest b: created = false")
	}
	// A second report keeps the first.
	created, err = s.QuarantineDigest(ctx, store.Quarantine{Digest: b, Reason: "again", Agent: agentID(2), Since: time.Now()})
	noErr(t, "QuarantineDigest b again", err)
	if created {
		t.Fatal("QuarantineDigest b again: created = true")
	}
	// Hostile text from an agent is kept as text, bounded.
	hostile := "nul\x00bad utf8 \xff " + strings.Repeat("é", store.MaxQuarantineReason)
	_, err = s.QuarantineDigest(ctx, store.Quarantine{Digest: a, Reason: hostile})
	noErr(t, "QuarantineDigest a with a hostile reason", err)

	qs, err = s.ListQuarantine(ctx)
	noErr(t, "ListQuarantine", err)
	if len(qs) != 2 || qs[0].Digest != a || qs[1].Digest != b {
		t.Fatalf("ListQuarantine = %+v, want %s then %s", qs, a, b)
	}
	qb := qs[1]
	if qb.Reason != "died while running" || qb.Agent != agentID(1) || !qb.Since.Equal(since.Truncate(time.Microsecond)) ||
		qb.Since.Location() != time.UTC || qb.Created.Before(before) || qb.Created.Location() != time.UTC {
		t.Fatalf("quarantine of b = %+v", qb)
	}
	qa := qs[0]
	if strings.ContainsRune(qa.Reason, 0) || !strings.HasPrefix(qa.Reason, "nulbad utf8 \uFFFD ") || len(qa.Reason) > store.MaxQuarantineReason || !qa.Since.IsZero() || qa.Agent != "" {
		t.Fatalf("quarantine of a = %+v (reason %d bytes)", qa, len(qa.Reason))
	}

	got, err := s.ReleaseDigest(ctx, b)
	noErr(t, "ReleaseDigest b", err)
	equal(t, "released", got, qb)
	_, err = s.ReleaseDigest(ctx, b)
	wantErr(t, "ReleaseDigest b twice", err, store.ErrNotFound)
	// Released, it may be quarantined again.
	created, err = s.QuarantineDigest(ctx, store.Quarantine{Digest: b, Reason: "crashed again"})
	noErr(t, "QuarantineDigest b after release", err)
	if !created {
		t.Fatal("QuarantineDigest after release: created = false")
	}
	want, err := s.ListQuarantine(ctx)
	noErr(t, "ListQuarantine", err)
	noErr(t, "Close", s.Close())
	s = reopen(t)
	got2, err := s.ListQuarantine(ctx)
	noErr(t, "ListQuarantine after reopen", err)
	equal(t, "quarantine after reopen", got2, want)
}

func testConcurrentQuarantine(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ctx := t.Context()
	_, d := Code("contended")
	var created atomic.Int32
	parallel(goroutines, func(i int) {
		ok, err := s.QuarantineDigest(ctx, store.Quarantine{Digest: d, Reason: "r", Agent: agentID(i)})
		if err != nil {
			t.Errorf("QuarantineDigest %d: %v", i, err)
		}
		if ok {
			created.Add(1)
		}
	})
	if n := created.Load(); n != 1 {
		t.Fatalf("%d concurrent reports created the quarantine, want 1", n)
	}
	qs, err := s.ListQuarantine(ctx)
	noErr(t, "ListQuarantine", err)
	if len(qs) != 1 {
		t.Fatalf("ListQuarantine = %+v", qs)
	}
}
