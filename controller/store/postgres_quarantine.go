package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

const quarantineColumns = `digest, reason, agent, since, created`

func scanQuarantine(row pgx.Row) (Quarantine, error) {
	var q Quarantine
	err := row.Scan(&q.Digest, &q.Reason, &q.Agent, &q.Since, &q.Created)
	q.Since, q.Created = q.Since.UTC(), q.Created.UTC()
	return q, err
}

// QuarantineDigest implements Store.
func (p *Postgres) QuarantineDigest(ctx context.Context, q Quarantine) (bool, error) {
	q, err := prepareQuarantine(q, now())
	if err != nil {
		return false, err
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO quarantine (`+quarantineColumns+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (digest) DO NOTHING`, q.Digest, q.Reason, q.Agent, q.Since, q.Created)
	if err != nil {
		return false, pgFail(err, "quarantine %s", q.Digest)
	}
	return tag.RowsAffected() == 1, nil
}

// ListQuarantine implements Store.
func (p *Postgres) ListQuarantine(ctx context.Context) ([]Quarantine, error) {
	rows, _ := p.pool.Query(ctx, `SELECT `+quarantineColumns+` FROM quarantine ORDER BY digest`)
	qs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Quarantine, error) { return scanQuarantine(r) })
	if err != nil {
		return nil, pgFail(err, "list quarantine")
	}
	if qs == nil {
		qs = []Quarantine{}
	}
	return qs, nil
}

// ReleaseDigest implements Store.
func (p *Postgres) ReleaseDigest(ctx context.Context, digest string) (Quarantine, error) {
	q, err := scanQuarantine(p.pool.QueryRow(ctx, `DELETE FROM quarantine WHERE digest = $1 RETURNING `+quarantineColumns, digest))
	if err != nil {
		return Quarantine{}, pgFail(err, "release %s", digest)
	}
	return q, nil
}
