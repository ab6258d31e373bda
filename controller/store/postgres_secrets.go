package store

import (
	"bytes"
	"context"

	"github.com/jackc/pgx/v5"
)

// PutSecret implements SecretStore.
func (p *Postgres) PutSecret(ctx context.Context, s Secret) (Secret, error) {
	s.Updated = now()
	tag, err := p.pool.Exec(ctx, `
		INSERT INTO secrets (module_id, name, key_id, sealed, updated)
		SELECT id, $2, $3, $4, $5 FROM modules WHERE name = $1
		ON CONFLICT (module_id, name) DO UPDATE SET key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed, updated = EXCLUDED.updated`,
		s.Module, s.Name, s.KeyID, s.Sealed, s.Updated)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return Secret{}, pgFail(err, "put secret %q of module %q", s.Name, s.Module)
	}
	return s, nil
}

const secretColumns = `m.name, s.name, s.key_id, s.sealed, s.updated`

func scanSecrets(rows pgx.Rows) ([]Secret, error) {
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Secret, error) {
		var s Secret
		err := row.Scan(&s.Module, &s.Name, &s.KeyID, &s.Sealed, &s.Updated)
		s.Updated = s.Updated.UTC()
		return s, err
	})
	if out == nil {
		out = []Secret{}
	}
	return out, err
}

// ListSecrets implements SecretStore.
func (p *Postgres) ListSecrets(ctx context.Context, module string) ([]Secret, error) {
	var out []Secret
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM modules WHERE name = $1`, module).Scan(&id); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT `+secretColumns+` FROM secrets s JOIN modules m ON m.id = s.module_id
			WHERE s.module_id = $1 ORDER BY s.name`, id)
		var err error
		out, err = scanSecrets(rows)
		return err
	})
	if err != nil {
		return nil, pgFail(err, "list secrets of module %q", module)
	}
	return out, nil
}

// DeleteSecret implements SecretStore.
func (p *Postgres) DeleteSecret(ctx context.Context, module, name string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM secrets WHERE name = $2
		AND module_id = (SELECT id FROM modules WHERE name = $1)`, module, name)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "delete secret %q of module %q", name, module)
}

// AllSecrets implements SecretStore.
func (p *Postgres) AllSecrets(ctx context.Context) ([]Secret, error) {
	rows, _ := p.pool.Query(ctx, `SELECT `+secretColumns+` FROM secrets s JOIN modules m ON m.id = s.module_id
		ORDER BY m.name, s.name`)
	out, err := scanSecrets(rows)
	if err != nil {
		return nil, pgFail(err, "list secrets")
	}
	return out, nil
}

// RewrapSecret implements SecretStore.
func (p *Postgres) RewrapSecret(ctx context.Context, s Secret, prev []byte) (bool, error) {
	if bytes.Equal(prev, s.Sealed) {
		return false, nil
	}
	tag, err := p.pool.Exec(ctx, `UPDATE secrets SET key_id = $3, sealed = $4
		WHERE module_id = (SELECT id FROM modules WHERE name = $1) AND name = $2 AND sealed = $5`,
		s.Module, s.Name, s.KeyID, s.Sealed, prev)
	if err != nil {
		return false, pgFail(err, "rewrap secret %q of module %q", s.Name, s.Module)
	}
	return tag.RowsAffected() == 1, nil
}
