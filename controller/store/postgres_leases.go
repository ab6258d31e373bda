package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// coordination is the small pool lease statements use, apart from the
// store's pool: a renewal must not queue behind a burst of API queries
// for a connection, or a busy controller would lose its leases.
type coordination struct {
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

// coordPoolConns is the coordination pool's size: a controller renews two
// leases a second.
const coordPoolConns = 2

func (p *Postgres) coordPool(ctx context.Context) (*pgxpool.Pool, error) {
	p.coord.once.Do(func() {
		cfg := p.pool.Config() // a copy
		cfg.MaxConns = coordPoolConns
		cfg.MinConns = 0
		p.coord.pool, p.coord.err = pgxpool.NewWithConfig(ctx, cfg)
	})
	return p.coord.pool, p.coord.err
}

func (p *Postgres) closeCoordination() {
	p.coord.once.Do(func() {}) // none made after Close
	if p.coord.pool != nil {
		p.coord.pool.Close()
	}
}

// TakeLease takes the lease name for owner, or renews it when owner holds
// it already, for ttl (at most MaxLeaseTTL) from the database's now(). It
// succeeds when the row is owner's, has expired, or expires further ahead
// than MaxLeaseTTL (no controller wrote that); otherwise held is false.
// epoch is the lease's epoch after the call when held.
//
// One statement: an INSERT for a lease never taken, else an UPDATE whose
// WHERE says who may take it, so two controllers asking at once are
// ordered by the row's lock and exactly one gets it.
func (p *Postgres) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (epoch int64, held bool, err error) {
	ttl = min(ttl, MaxLeaseTTL)
	pool, err := p.coordPool(ctx)
	if err != nil {
		return 0, false, pgFail(err, "lease %q", name)
	}
	err = pool.QueryRow(ctx, `
		INSERT INTO leases AS l (name, owner, epoch, acquired, expires)
		VALUES ($1, $2, 1, now(), now() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET
			owner    = EXCLUDED.owner,
			expires  = EXCLUDED.expires,
			epoch    = CASE WHEN l.owner = EXCLUDED.owner THEN l.epoch ELSE l.epoch + 1 END,
			acquired = CASE WHEN l.owner = EXCLUDED.owner THEN l.acquired ELSE now() END
		WHERE l.owner = EXCLUDED.owner OR l.expires <= now()
			OR l.expires > now() + $4 * interval '1 microsecond'
		RETURNING epoch`, name, owner, ttl.Microseconds(), MaxLeaseTTL.Microseconds()).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil // another owner's, live
	}
	if err != nil {
		return 0, false, pgFail(err, "lease %q", name)
	}
	return epoch, true, nil
}

// ReleaseLease ends owner's lease name at once (its expiry becomes the
// database's now()), so that another controller takes it at its next
// attempt. It reports whether owner held it.
func (p *Postgres) ReleaseLease(ctx context.Context, name, owner string) (bool, error) {
	pool, err := p.coordPool(ctx)
	if err != nil {
		return false, pgFail(err, "release lease %q", name)
	}
	tag, err := pool.Exec(ctx, `UPDATE leases SET expires = now() WHERE name = $1 AND owner = $2 AND expires > now()`, name, owner)
	if err != nil {
		return false, pgFail(err, "release lease %q", name)
	}
	return tag.RowsAffected() == 1, nil
}

// Leases lists the leases, by name.
func (p *Postgres) Leases(ctx context.Context) ([]Lease, error) {
	rows, _ := p.pool.Query(ctx, `SELECT name, owner, epoch, acquired, expires, expires > now() FROM leases ORDER BY name`)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) {
		var l Lease
		err := r.Scan(&l.Name, &l.Owner, &l.Epoch, &l.Acquired, &l.Expires, &l.Live)
		l.Acquired, l.Expires = l.Acquired.UTC(), l.Expires.UTC()
		return l, err
	})
	if err != nil {
		return nil, pgFail(err, "list leases")
	}
	if out == nil {
		out = []Lease{}
	}
	return out, nil
}

// ClaimTick claims the cloud timer tick (key, scheduled) for owner: true
// for exactly one caller per tick, whichever inserts its row first.
func (p *Postgres) ClaimTick(ctx context.Context, key string, scheduled time.Time, owner string) (bool, error) {
	tag, err := p.pool.Exec(ctx, `INSERT INTO timer_claims (timer_key, scheduled, owner) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, key, storeTime(scheduled), owner)
	if err != nil {
		return false, pgFail(err, "claim timer tick %s at %s", key, scheduled)
	}
	return tag.RowsAffected() == 1, nil
}

// PruneTickClaims deletes the claims of ticks scheduled before the
// database's now() minus age; it returns how many.
func (p *Postgres) PruneTickClaims(ctx context.Context, age time.Duration) (int64, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM timer_claims WHERE scheduled < now() - $1 * interval '1 microsecond'`, age.Microseconds())
	if err != nil {
		return 0, pgFail(err, "prune timer claims")
	}
	return tag.RowsAffected(), nil
}

// identityName is the one row of cluster_identity.
const identityName = "controller"

// StoreIdentity stores id as the cluster's identity unless one is stored
// already, and returns the one stored (id, or the earlier one): two
// controllers starting at once on an empty database agree.
func (p *Postgres) StoreIdentity(ctx context.Context, id SealedIdentity) (SealedIdentity, error) {
	if _, err := p.pool.Exec(ctx, `INSERT INTO cluster_identity (name, cert_pem, key_id, sealed_key, created)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, identityName, id.CertPEM, id.KeyID, id.SealedKey, now()); err != nil {
		return SealedIdentity{}, pgFail(err, "store the cluster identity")
	}
	return p.LoadIdentity(ctx)
}

// LoadIdentity returns the cluster's identity; ErrNotFound when none is
// stored yet.
func (p *Postgres) LoadIdentity(ctx context.Context) (SealedIdentity, error) {
	var id SealedIdentity
	err := p.pool.QueryRow(ctx, `SELECT cert_pem, key_id, sealed_key, created FROM cluster_identity WHERE name = $1`, identityName).
		Scan(&id.CertPEM, &id.KeyID, &id.SealedKey, &id.Created)
	if err != nil {
		return SealedIdentity{}, pgFail(err, "read the cluster identity")
	}
	id.Created = id.Created.UTC()
	return id, nil
}

// RewrapIdentity replaces the sealed key of the cluster identity (sealed
// again under another secrets key) if it is still prev; it reports
// whether it replaced it.
func (p *Postgres) RewrapIdentity(ctx context.Context, keyID string, sealed, prev []byte) (bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE cluster_identity SET key_id = $2, sealed_key = $3 WHERE name = $1 AND sealed_key = $4`,
		identityName, keyID, sealed, prev)
	if err != nil {
		return false, pgFail(err, "reseal the cluster identity")
	}
	return tag.RowsAffected() == 1, nil
}
