package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// pgRecordVersion adds fn as the newest version of its function, after
// keeping prev (what it replaced) as version 1 when the function has no
// version yet (made before versions were kept, or never updated). The
// caller holds the function's row lock and both digests' locks.
func pgRecordVersion(ctx context.Context, tx pgx.Tx, moduleID int64, prev, fn Function) error {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(number), 0) FROM function_versions WHERE module_id = $1 AND name = $2`,
		moduleID, fn.Name).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		n = 1
		if err := insertVersion(ctx, tx, moduleID, fn.Name, versionOf(prev, n)); err != nil {
			return err
		}
	}
	return insertVersion(ctx, tx, moduleID, fn.Name, versionOf(fn, n+1))
}

func insertVersion(ctx context.Context, tx pgx.Tx, moduleID int64, name string, v FunctionVersion) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO function_versions (module_id, name, number, digest, size, abi, spec, created)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		moduleID, name, v.Number, v.Digest, v.Size, v.ABI, encodeVersionSpec(v.Spec), v.Created)
	return err
}

// pgDeleteVersions deletes the versions of one function (name "": of every
// function of the module) and returns their digests, for the caller to
// lock and collect.
func pgDeleteVersions(ctx context.Context, tx pgx.Tx, moduleID int64, name string) ([]string, error) {
	rows, _ := tx.Query(ctx, `DELETE FROM function_versions WHERE module_id = $1 AND ($2 = '' OR name = $2) RETURNING digest`, moduleID, name)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// FunctionVersions implements Store.
func (p *Postgres) FunctionVersions(ctx context.Context, module, name string) ([]FunctionVersion, error) {
	var vs []FunctionVersion
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var moduleID int64
		fn, err := scanFunction(tx.QueryRow(ctx, `
			SELECT f.module_id, `+functionColumns+` FROM functions f JOIN modules m ON m.id = f.module_id
			WHERE m.name = $1 AND f.name = $2`, module, name), &moduleID)
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT number, digest, size, abi, spec, created FROM function_versions
			WHERE module_id = $1 AND name = $2 ORDER BY number DESC`, moduleID, name)
		vs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (FunctionVersion, error) {
			var v FunctionVersion
			var spec []byte
			err := r.Scan(&v.Number, &v.Digest, &v.Size, &v.ABI, &spec, &v.Created)
			v.Created = v.Created.UTC()
			v.Spec, v.Unreadable = decodeVersionSpec(spec)
			return v, err
		})
		if err == nil && len(vs) == 0 {
			v := versionOf(fn, 1)
			v.Unreadable = fn.Unreadable
			vs = []FunctionVersion{v}
		}
		return err
	})
	if err != nil {
		return nil, pgFail(err, "versions of function %s/%s", module, name)
	}
	return vs, nil
}

// PruneFunctionVersions implements Store.
func (p *Postgres) PruneFunctionVersions(ctx context.Context, module, name string, keep int) ([]string, error) {
	var removed []string
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		var moduleID int64
		// The function's row lock orders this with its updates and delete.
		if err := tx.QueryRow(ctx, `
			SELECT f.module_id FROM functions f JOIN modules m ON m.id = f.module_id
			WHERE m.name = $1 AND f.name = $2 FOR UPDATE OF f`, module, name).Scan(&moduleID); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			WITH gone AS (
				DELETE FROM function_versions WHERE module_id = $1 AND name = $2 AND number IN (
					SELECT number FROM function_versions WHERE module_id = $1 AND name = $2
					ORDER BY number DESC OFFSET $3)
				RETURNING number, digest)
			SELECT digest FROM gone ORDER BY number DESC`, moduleID, name, keepVersions(keep))
		var err error
		if removed, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if err := lockDigests(ctx, tx, removed...); err != nil {
			return err
		}
		return dropUnusedCode(ctx, tx, removed...)
	})
	if err != nil {
		return nil, pgFail(err, "prune versions of function %s/%s", module, name)
	}
	if removed == nil {
		removed = []string{}
	}
	return removed, nil
}

// KeptDigests implements Store: one query over the versions whose code is
// not their function's current code, newest first per function.
func (p *Postgres) KeptDigests(ctx context.Context, n int) (map[string][]string, error) {
	rows, _ := p.pool.Query(ctx, `
		SELECT m.name, v.name, v.digest, f.digest FROM function_versions v
		JOIN functions f ON f.module_id = v.module_id AND f.name = v.name
		JOIN modules m ON m.id = v.module_id
		WHERE v.digest <> f.digest
		ORDER BY v.module_id, v.name, v.number DESC`)
	out := map[string][]string{}
	var module, name, digest, current string
	_, err := pgx.ForEachRow(rows, []any{&module, &name, &digest, &current}, func() error {
		key := module + "/" + name
		out[key] = keepDigestsOf(out[key], current, digest, n)
		return nil
	})
	if err != nil {
		return nil, pgFail(err, "kept digests")
	}
	return out, nil
}
