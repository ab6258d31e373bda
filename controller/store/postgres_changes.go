package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// changeChannel is the NOTIFY channel of migration 0014's triggers.
const changeChannel = "wisp_changes"

// maxChangeKey bounds the key of a change read from a notification
// (0014's triggers leave out keys over 1,024 bytes; anyone may NOTIFY).
const maxChangeKey = 1024

// Bounds of the feed's reconnection backoff, and how long its connection
// may be silent before it is pinged (a connection cut without a reset
// would otherwise wait for a notification forever).
const (
	feedMinBackoff = 100 * time.Millisecond
	feedMaxBackoff = 5 * time.Second
	feedPingAfter  = 30 * time.Second
	feedPingWithin = 5 * time.Second
)

// WatchChanges implements ChangeFeed with LISTEN on a connection of its
// own (not the pool's: a listening session must stay one session). It
// reconnects after any error, with backoff, and calls fn(ChangeAll) after
// every LISTEN, the first included. A notification of another schema, of
// an unknown kind, or not of the triggers' form is ignored; a key over
// maxChangeKey is dropped (the change then means any of its kind).
//
// It returns ctx's error, or ErrClosed once the store is closed.
func (p *Postgres) WatchChanges(ctx context.Context, fn func(Change)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closedCtx, cancel)
	defer stop()
	backoff := feedMinBackoff
	for {
		err := p.listen(ctx, fn, func() { backoff = feedMinBackoff })
		if ctx.Err() != nil {
			if p.closedCtx.Err() != nil {
				return ErrClosed
			}
			return ctx.Err()
		}
		p.log.Warn("change feed: lost the listening connection; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedMaxBackoff)
	}
}

// listen connects, listens, reports ChangeAll and then every notification
// until the connection fails or ctx is done. listening is called once the
// LISTEN succeeded.
func (p *Postgres) listen(ctx context.Context, fn func(Change), listening func()) error {
	cfg := p.pool.Config().ConnConfig.Copy()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	var schema string
	if err := conn.QueryRow(ctx, `SELECT coalesce(current_schema(), '')`).Scan(&schema); err != nil {
		return fmt.Errorf("read the schema: %w", err)
	}
	// Named in pg_stat_activity, so an operator (or a test) finds it.
	if _, err := conn.Exec(ctx, `SELECT set_config('application_name', $1, false)`, FeedApplicationName(schema)); err != nil {
		return fmt.Errorf("name the connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	listening()
	// Notifications committed before the LISTEN are not delivered: the
	// watcher re-reads everything now.
	fn(Change{Kind: ChangeAll})
	prefix := schema + ":"
	for {
		wctx, cancel := context.WithTimeout(ctx, feedPingAfter)
		n, err := conn.WaitForNotification(wctx)
		timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		switch {
		case err == nil:
			if c, ok := parseChange(n.Channel, n.Payload, prefix); ok {
				fn(c)
			} else {
				p.log.Debug("change feed: ignored a notification", "channel", n.Channel, "bytes", len(n.Payload))
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !timedOut:
			return err
		}
		// Silent for a while: check that the connection still carries.
		pctx, cancel := context.WithTimeout(ctx, feedPingWithin)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	}
}

// FeedApplicationName is the application_name of the change feed's
// connection for a store in schema (cut to Postgres's 63 bytes).
func FeedApplicationName(schema string) string {
	n := "wisp-changes:" + schema
	if len(n) > 63 {
		n = strings.ToValidUTF8(n[:63], "")
	}
	return n
}

// parseChange reads a notification of the triggers of migration 0014:
// payload "<schema>:<kind>:<key>" on changeChannel, for this store's
// schema (prefix is "<schema>:"). Anything else is no change (ok false).
func parseChange(channel, payload, prefix string) (Change, bool) {
	rest, ok := strings.CutPrefix(payload, prefix)
	if channel != changeChannel || !ok {
		return Change{}, false
	}
	kind, key, _ := strings.Cut(rest, ":")
	c := Change{Kind: ChangeKind(kind), Key: key}
	if !c.Kind.known() {
		return Change{}, false
	}
	if len(c.Key) > maxChangeKey {
		c.Key = ""
	}
	return c, true
}

// known reports whether k is one of the kinds of changes.go.
func (k ChangeKind) known() bool {
	switch k {
	case ChangeAll, ChangeFunctions, ChangeModules, ChangeScripts, ChangeSubjects,
		ChangeJoinTokens, ChangeAgents, ChangeSecrets:
		return true
	}
	return false
}
