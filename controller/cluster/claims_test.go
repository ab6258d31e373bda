package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wispfn/wisp/controller/cluster"
)

// TestTickClaimsOneWinner: three controllers claim the same ticks at once;
// each tick has exactly one winner. Claims older than TickClaimAge are
// pruned, and the prune runs at most once per TickPruneEvery.
func TestTickClaimsOneWinner(t *testing.T) {
	t.Parallel()
	st, dsn := openPostgresDSN(t)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Second)
	clock := atomic.Pointer[time.Time]{}
	clock.Store(&now)
	claimers := make([]*cluster.TickClaims, 3)
	for i := range claimers {
		claimers[i] = &cluster.TickClaims{Store: st, Owner: fmt.Sprintf("ctl-%d", i), Now: func() time.Time { return *clock.Load() }}
	}
	const ticks = 50
	wins := make([]atomic.Int32, ticks)
	var wg sync.WaitGroup
	for _, c := range claimers {
		wg.Go(func() {
			for i := range ticks {
				ok, err := c.Claim(ctx, "_/f#0", now.Add(time.Duration(i)*time.Second))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					wins[i].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for i := range wins {
		if n := wins[i].Load(); n != 1 {
			t.Errorf("tick %d claimed %d times", i, n)
		}
	}

	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	count := func() (n int) {
		t.Helper()
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM timer_claims`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := pg.Exec(ctx, `INSERT INTO timer_claims VALUES ('_/f#0', now() - interval '2 hours', 'old')`); err != nil {
		t.Fatal(err)
	}
	// Each claimer pruned at its first claim; the next prune is due
	// TickPruneEvery later.
	if _, err := claimers[0].Claim(ctx, "_/f#1", now); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != ticks+2 {
		t.Fatalf("%d claims, want %d (the old one kept until the next prune)", got, ticks+2)
	}
	later := now.Add(cluster.TickPruneEvery)
	clock.Store(&later)
	if _, err := claimers[0].Claim(ctx, "_/f#1", later); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != ticks+2 {
		t.Fatalf("%d claims after the prune, want %d (old one gone, one more)", got, ticks+2)
	}
	var old int
	pg.QueryRow(ctx, `SELECT count(*) FROM timer_claims WHERE owner = 'old'`).Scan(&old)
	if old != 0 {
		t.Error("the two-hour-old claim was not pruned")
	}
}
