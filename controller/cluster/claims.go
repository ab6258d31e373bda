package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// TickStore keeps the claimed cloud timer ticks: store.Postgres does.
// ClaimTick is true for exactly one caller per (key, scheduled);
// PruneTickClaims deletes the claims of ticks older than age.
type TickStore interface {
	ClaimTick(ctx context.Context, key string, scheduled time.Time, owner string) (bool, error)
	PruneTickClaims(ctx context.Context, age time.Duration) (int64, error)
}

// How long claims are kept, and how often a controller prunes them. A tick
// is claimed within cron.DefaultGrace (2 s) of its time or never, so an
// hour is far more than any claim needs.
const (
	TickClaimAge   = time.Hour
	TickPruneEvery = 10 * time.Minute
)

// TickClaims is controller/timers' Claimer over a TickStore: each
// controller of the cluster computes the same ticks, and the one whose
// claim is inserted first runs the tick. Without a TickClaims (the
// embedded store) every tick is the lone controller's.
//
// A tick whose claimer dies before running it is not run (at most once),
// and a tick the store cannot be asked about is skipped by the asking
// controller (timers counts it as "claimed").
type TickClaims struct {
	Store TickStore
	Owner string       // this controller's instance id, kept in the claim
	Log   *slog.Logger // nil: discard
	// Now is the clock deciding when to prune; nil: time.Now.
	Now func() time.Time

	mu        sync.Mutex
	lastPrune time.Time
}

// Claim implements controller/timers.Claimer. Every TickPruneEvery one
// call also prunes the claims older than TickClaimAge first.
func (c *TickClaims) Claim(ctx context.Context, key string, scheduled time.Time) (bool, error) {
	c.prune(ctx)
	return c.Store.ClaimTick(ctx, key, scheduled, c.Owner)
}

func (c *TickClaims) prune(ctx context.Context) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	c.mu.Lock()
	due := now().Sub(c.lastPrune) >= TickPruneEvery
	if due {
		c.lastPrune = now()
	}
	c.mu.Unlock()
	if !due {
		return
	}
	n, err := c.Store.PruneTickClaims(ctx, TickClaimAge)
	if c.Log == nil {
		return
	}
	if err != nil {
		c.Log.Warn("pruning claimed timer ticks", "err", err)
		return
	}
	if n > 0 {
		c.Log.Debug("pruned claimed timer ticks", "rows", n)
	}
}
