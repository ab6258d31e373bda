package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store kept in PostgreSQL through a pgx pool. Several
// controllers may share one database: every write is one transaction, and the
// code garbage collection is serialised per digest (see lockDigests).
type Postgres struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// closedCtx is done once Close is called: change feeds end then.
	closedCtx context.Context
	closed    context.CancelFunc
	coord     coordination // leases' own connections (postgres_leases.go)
}

var _ Store = (*Postgres)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered SQL file of migrations/.
type migration struct {
	version int
	name    string
	sql     string
}

// maxTxAttempts bounds how often a transaction is retried after Postgres
// aborted it for a deadlock or a serialization failure.
const maxTxAttempts = 5

// OpenPostgres connects to the database named by dsn (a URL or key=value
// string as pgx accepts; empty means the standard PG* environment variables)
// and applies any missing schema migration before returning.
//
// # Notes
//
// Migrations run in one transaction under an advisory lock keyed by the
// current schema, so controllers starting together apply each migration once
// and the others wait, then find nothing to do. A database already migrated
// past what this binary knows is used as is, with a warning: migrations are
// additive, so an older controller keeps working during a rolling upgrade.
//
// The tables go in the first schema of the connection's search_path; set it
// in the DSN (search_path=...) to keep Wisp out of "public".
//
// # Errors
//
// A bad DSN, an unreachable server or a failed migration; the pool is closed
// before returning.
func OpenPostgres(ctx context.Context, dsn string, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: parse postgres dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect to postgres %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	closedCtx, closed := context.WithCancel(context.Background())
	p := &Postgres{pool: pool, log: log, closedCtx: closedCtx, closed: closed}
	if err := p.migrate(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// loadMigrations reads migrations/NNNN_name.sql, sorted by number, and checks
// that they are numbered 1, 2, 3... without gaps.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration file %q is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migrations must be numbered 1, 2, 3...: found %d where %d belongs", m.version, i+1)
		}
	}
	return ms, nil
}

// migrate applies the missing migrations in one transaction. The advisory
// lock serialises concurrent controllers on the same schema; it is released
// at commit or rollback, so a crashed controller never leaves it held.
func (p *Postgres) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`SELECT pg_advisory_xact_lock(hashtextextended('wisp.migrate:' || coalesce(current_schema(), ''), 0))`); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY,
			name    text NOT NULL,
			applied timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, _ := tx.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, m := range ms {
			if slices.Contains(applied, int32(m.version)) {
				continue
			}
			// No arguments: pgx uses the simple protocol, which allows several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
			p.log.Info("applied schema migration", "version", m.version, "name", m.name)
		}
		if n := len(applied); n > 0 && int(applied[n-1]) > len(ms) {
			p.log.Warn("database schema is newer than this controller", "schema_version", applied[n-1], "known_version", len(ms))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: migrate postgres schema: %w", err)
	}
	return nil
}

// inTx runs fn in a transaction, retrying when Postgres aborted it for a
// deadlock or a serialization failure (fn must be safe to run again).
func (p *Postgres) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, p.pool, fn)
		var pgErr *pgconn.PgError
		if attempt < maxTxAttempts && errors.As(err, &pgErr) &&
			(pgErr.Code == "40P01" || pgErr.Code == "40001") {
			p.log.Debug("retrying transaction", "attempt", attempt, "sqlstate", pgErr.Code)
			continue
		}
		return err
	}
}

// pgFail wraps err with what the call was doing, translating Postgres errors
// to the package's sentinels: no rows and foreign-key violations (a missing
// module) become ErrNotFound, unique violations ErrExists.
func pgFail(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", what, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("store: %s: %w", what, ErrExists)
		case "23503": // foreign_key_violation
			return fmt.Errorf("store: %s: %w", what, ErrNotFound)
		}
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// lockDigests takes, for the rest of tx, an advisory lock per digest, in
// sorted order so that two transactions never wait on each other.
//
// Every transaction that adds or drops a reference to code holds its
// digest's lock before it looks at the code table. So, under READ COMMITTED,
// the statement that garbage-collects a digest sees every committed function
// using it, and a writer that finds the code missing knows no one else is
// deleting or inserting it.
func lockDigests(ctx context.Context, tx pgx.Tx, digests ...string) error {
	digests = slices.Clone(digests)
	slices.Sort(digests)
	for _, d := range slices.Compact(digests) {
		if _, err := tx.Exec(ctx,
			`SELECT pg_advisory_xact_lock(hashtextextended(coalesce(current_schema(), '') || ':wisp.code:' || $1, 0))`, d); err != nil {
			return fmt.Errorf("lock code %s: %w", d, err)
		}
	}
	return nil
}

// putCode stores code under digest unless it is there already. The caller
// holds the digest's lock.
func putCode(ctx context.Context, tx pgx.Tx, digest string, code []byte) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM code WHERE digest = $1)`, digest).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO code (digest, bytes) VALUES ($1, $2)`, digest, code)
	return err
}

// dropUnusedCode deletes the code of digests no function, and no kept
// version of a function, refers to any more. The caller holds the digests'
// locks.
func dropUnusedCode(ctx context.Context, tx pgx.Tx, digests ...string) error {
	for _, d := range digests {
		if _, err := tx.Exec(ctx,
			`DELETE FROM code WHERE digest = $1 AND NOT EXISTS (SELECT 1 FROM functions WHERE digest = $1)
			AND NOT EXISTS (SELECT 1 FROM function_versions WHERE digest = $1)`, d); err != nil {
			return err
		}
	}
	return nil
}

// ListModules implements Store.
func (p *Postgres) ListModules(ctx context.Context) ([]Module, error) {
	rows, _ := p.pool.Query(ctx, `SELECT name, owner FROM modules ORDER BY name`)
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Module, error) {
		var m Module
		return m, r.Scan(&m.Name, &m.Owner)
	})
	if err != nil {
		return nil, pgFail(err, "list modules")
	}
	if ms == nil {
		ms = []Module{}
	}
	return ms, nil
}

// CreateModule implements Store.
func (p *Postgres) CreateModule(ctx context.Context, name, owner string) error {
	tag, err := p.pool.Exec(ctx, `INSERT INTO modules (name, owner) SELECT $1, $2 WHERE `+pgOwnerExists, name, owner)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "create module %q", name)
}

// pgOwnerExists is true when $2 is the admin ("") or a subject, whose row it
// locks against DeleteSubject (which locks it FOR UPDATE) until the insert
// commits: a subject's delete and its creates are ordered.
const pgOwnerExists = `($2 = '' OR EXISTS (SELECT 1 FROM subjects WHERE name = $2 FOR KEY SHARE))`

// ModuleOwner implements Store.
func (p *Postgres) ModuleOwner(ctx context.Context, name string) (string, error) {
	var owner string
	if err := p.pool.QueryRow(ctx, `SELECT owner FROM modules WHERE name = $1`, name).Scan(&owner); err != nil {
		return "", pgFail(err, "owner of module %q", name)
	}
	return owner, nil
}

// GetModule implements Store.
func (p *Postgres) GetModule(ctx context.Context, name string) (Module, error) {
	rows, _ := p.pool.Query(ctx, `
		SELECT m.owner, f.name FROM modules m LEFT JOIN functions f ON f.module_id = m.id
		WHERE m.name = $1 ORDER BY f.name`, name)
	type row struct {
		owner string
		fn    *string
	}
	fns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.owner, &x.fn)
	})
	if err != nil {
		return Module{}, pgFail(err, "get module %q", name)
	}
	if len(fns) == 0 {
		return Module{}, pgFail(pgx.ErrNoRows, "get module %q", name)
	}
	m := Module{Name: name, Owner: fns[0].owner, Functions: []string{}}
	for _, f := range fns {
		if f.fn != nil { // the LEFT JOIN's row for a module without functions
			m.Functions = append(m.Functions, *f.fn)
		}
	}
	return m, nil
}

// RenameModule implements Store.
func (p *Postgres) RenameModule(ctx context.Context, from, to string) error {
	if from == DefaultModule || to == DefaultModule {
		return fmt.Errorf("store: rename module %q to %q: %w", from, to, ErrDefaultModule)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE modules SET name = $2 WHERE name = $1`, from, to)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "rename module %q to %q", from, to)
}

// DeleteModule implements Store.
func (p *Postgres) DeleteModule(ctx context.Context, name string) error {
	if name == DefaultModule {
		return fmt.Errorf("store: delete module %q: %w", name, ErrDefaultModule)
	}
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		// FOR UPDATE makes a concurrent CreateFunction in this module wait,
		// then fail its foreign key (ErrNotFound) rather than add a function
		// whose code this transaction would not collect.
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM modules WHERE name = $1 FOR UPDATE`, name).Scan(&id); err != nil {
			return err
		}
		// The functions' row locks before their versions go, as
		// DeleteFunction: an update waiting on one then finds it deleted.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM functions WHERE module_id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		versions, err := pgDeleteVersions(ctx, tx, id, "")
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `DELETE FROM functions WHERE module_id = $1 RETURNING digest`, id)
		digests, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		digests = append(digests, versions...)
		if _, err := tx.Exec(ctx, `DELETE FROM modules WHERE id = $1`, id); err != nil {
			return err
		}
		if err := lockDigests(ctx, tx, digests...); err != nil {
			return err
		}
		return dropUnusedCode(ctx, tx, digests...)
	})
	return pgFail(err, "delete module %q", name)
}

// functionColumns are read by scanFunction, in this order.
const functionColumns = `m.name, f.name, f.digest, f.size, f.abi, f.events, f.sinks, f.metadata, f.config, f.created, f.updated`

// scanFunction reads functionColumns, after the extra destinations if any.
func scanFunction(row pgx.Row, extra ...any) (Function, error) {
	var fn Function
	var events, sinks, metadata, config []byte
	err := row.Scan(append(extra, &fn.Module, &fn.Name, &fn.Digest, &fn.Size, &fn.ABI,
		&events, &sinks, &metadata, &config, &fn.Created, &fn.Updated)...)
	fn.Created, fn.Updated = fn.Created.UTC(), fn.Updated.UTC()
	fn.Spec, fn.Unreadable = decodeSpec(events, sinks, metadata, config)
	return fn, err
}

// CreateFunction implements Store.
func (p *Postgres) CreateFunction(ctx context.Context, fn Function, code []byte) (Function, error) {
	fn, err := prepareFunction(fn, code)
	if err != nil {
		return Function{}, err
	}
	fn.Created = now()
	fn.Updated = fn.Created
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the module row first (KEY SHARE: renames proceed, deletes
		// wait), then the digest: DeleteModule takes them in the same order.
		var moduleID int64
		if err := tx.QueryRow(ctx, `SELECT id FROM modules WHERE name = $1 FOR KEY SHARE`, fn.Module).Scan(&moduleID); err != nil {
			return err
		}
		if err := lockDigests(ctx, tx, fn.Digest); err != nil {
			return err
		}
		if err := putCode(ctx, tx, fn.Digest, code); err != nil {
			return err
		}
		events, sinks, metadata, config := fn.Spec.Encode()
		_, err := tx.Exec(ctx, `
			INSERT INTO functions (module_id, name, digest, size, abi, events, sinks, metadata, config, created, updated)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			moduleID, fn.Name, fn.Digest, fn.Size, fn.ABI, events, sinks, metadata, config, fn.Created, fn.Updated)
		return err
	})
	if err != nil {
		return Function{}, pgFail(err, "create function %s/%s", fn.Module, fn.Name)
	}
	return fn, nil
}

// UpdateFunction implements Store.
func (p *Postgres) UpdateFunction(ctx context.Context, fn Function, code []byte) (Function, error) {
	fn, err := prepareFunction(fn, code)
	if err != nil {
		return Function{}, err
	}
	var prev Function
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		var (
			moduleID int64
			err      error
		)
		prev, err = scanFunction(tx.QueryRow(ctx, `
			SELECT f.module_id, `+functionColumns+` FROM functions f JOIN modules m ON m.id = f.module_id
			WHERE m.name = $1 AND f.name = $2 FOR UPDATE OF f`, fn.Module, fn.Name), &moduleID)
		if err != nil {
			return err
		}
		if err := lockDigests(ctx, tx, prev.Digest, fn.Digest); err != nil {
			return err
		}
		if err := putCode(ctx, tx, fn.Digest, code); err != nil {
			return err
		}
		fn.Created, fn.Updated = prev.Created, now()
		events, sinks, metadata, config := fn.Spec.Encode()
		if _, err := tx.Exec(ctx, `
			UPDATE functions SET digest = $3, size = $4, abi = $5, events = $6, sinks = $7, metadata = $8, config = $9, updated = $10
			WHERE module_id = $1 AND name = $2`,
			moduleID, fn.Name, fn.Digest, fn.Size, fn.ABI, events, sinks, metadata, config, fn.Updated); err != nil {
			return err
		}
		if err := pgRecordVersion(ctx, tx, moduleID, prev, fn); err != nil {
			return err
		}
		if prev.Digest != fn.Digest {
			return dropUnusedCode(ctx, tx, prev.Digest)
		}
		return nil
	})
	if err != nil {
		return Function{}, pgFail(err, "update function %s/%s", fn.Module, fn.Name)
	}
	return prev, nil
}

// GetFunction implements Store.
func (p *Postgres) GetFunction(ctx context.Context, module, name string) (Function, error) {
	fn, err := scanFunction(p.pool.QueryRow(ctx, `
		SELECT `+functionColumns+` FROM functions f JOIN modules m ON m.id = f.module_id
		WHERE m.name = $1 AND f.name = $2`, module, name))
	if err != nil {
		return Function{}, pgFail(err, "get function %s/%s", module, name)
	}
	return fn, nil
}

// ListFunctions implements Store.
func (p *Postgres) ListFunctions(ctx context.Context) ([]Function, error) {
	rows, _ := p.pool.Query(ctx, `
		SELECT `+functionColumns+` FROM functions f JOIN modules m ON m.id = f.module_id
		ORDER BY m.name, f.name`)
	fns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Function, error) { return scanFunction(r) })
	if err != nil {
		return nil, pgFail(err, "list functions")
	}
	if fns == nil {
		fns = []Function{}
	}
	return fns, nil
}

// DeleteFunction implements Store.
func (p *Postgres) DeleteFunction(ctx context.Context, module, name string) (Function, error) {
	var fn Function
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		// The function's row lock first, as UpdateFunction, so that no
		// version is added between the two deletes.
		var (
			moduleID int64
			err      error
		)
		fn, err = scanFunction(tx.QueryRow(ctx, `
			SELECT f.module_id, `+functionColumns+` FROM functions f JOIN modules m ON m.id = f.module_id
			WHERE m.name = $1 AND f.name = $2 FOR UPDATE OF f`, module, name), &moduleID)
		if err != nil {
			return err
		}
		digests, err := pgDeleteVersions(ctx, tx, moduleID, name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM functions WHERE module_id = $1 AND name = $2`, moduleID, name); err != nil {
			return err
		}
		digests = append(digests, fn.Digest)
		if err := lockDigests(ctx, tx, digests...); err != nil {
			return err
		}
		return dropUnusedCode(ctx, tx, digests...)
	})
	if err != nil {
		return Function{}, pgFail(err, "delete function %s/%s", module, name)
	}
	return fn, nil
}

// Code implements Store.
func (p *Postgres) Code(ctx context.Context, digest string) ([]byte, error) {
	var b []byte
	if err := p.pool.QueryRow(ctx, `SELECT bytes FROM code WHERE digest = $1`, digest).Scan(&b); err != nil {
		return nil, pgFail(err, "code %s", digest)
	}
	return b, nil
}

// HasCode reports whether the code of a digest is stored, without reading
// it (CodeChecker).
func (p *Postgres) HasCode(ctx context.Context, digest string) (bool, error) {
	var ok bool
	if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM code WHERE digest = $1)`, digest).Scan(&ok); err != nil {
		return false, pgFail(err, "code %s", digest)
	}
	return ok, nil
}

// CodeCount returns how many distinct code blobs are stored. It is not part
// of Store; tests use it to check that code is kept once per digest and
// dropped when unused.
func (p *Postgres) CodeCount(ctx context.Context) (int, error) {
	var n int
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM code`).Scan(&n); err != nil {
		return 0, pgFail(err, "count code")
	}
	return n, nil
}

// CreateSubject implements Store.
func (p *Postgres) CreateSubject(ctx context.Context, s Subject) (Subject, error) {
	s.Created = now()
	_, err := p.pool.Exec(ctx, `INSERT INTO subjects (name, token_hash, admin, created) VALUES ($1, $2, $3, $4)`,
		s.Name, s.TokenHash, s.Admin, s.Created)
	if err != nil {
		return Subject{}, pgFail(err, "create subject %q", s.Name)
	}
	return s, nil
}

func scanSubject(row pgx.Row) (Subject, error) {
	var s Subject
	err := row.Scan(&s.Name, &s.TokenHash, &s.Admin, &s.Created)
	s.Created = s.Created.UTC()
	return s, err
}

// ListSubjects implements Store.
func (p *Postgres) ListSubjects(ctx context.Context) ([]Subject, error) {
	rows, _ := p.pool.Query(ctx, `SELECT name, token_hash, admin, created FROM subjects ORDER BY name`)
	ss, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subject, error) { return scanSubject(r) })
	if err != nil {
		return nil, pgFail(err, "list subjects")
	}
	if ss == nil {
		ss = []Subject{}
	}
	return ss, nil
}

// SubjectByTokenHash implements Store.
func (p *Postgres) SubjectByTokenHash(ctx context.Context, hash []byte) (Subject, error) {
	s, err := scanSubject(p.pool.QueryRow(ctx,
		`SELECT name, token_hash, admin, created FROM subjects WHERE token_hash = $1`, hash))
	if err != nil {
		return Subject{}, pgFail(err, "subject by token")
	}
	return s, nil
}

// RotateSubjectToken implements Store.
func (p *Postgres) RotateSubjectToken(ctx context.Context, name string, hash []byte) error {
	tag, err := p.pool.Exec(ctx, `UPDATE subjects SET token_hash = $2 WHERE name = $1`, name, hash)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "rotate the token of subject %q", name)
}

// DeleteSubject implements Store.
func (p *Postgres) DeleteSubject(ctx context.Context, name string) error {
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		// The row lock orders this delete with a concurrent rotate or delete.
		var n string
		if err := tx.QueryRow(ctx, `SELECT name FROM subjects WHERE name = $1 FOR UPDATE`, name).Scan(&n); err != nil {
			return err
		}
		var owns bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM modules WHERE owner = $1)`, name).Scan(&owns); err != nil {
			return err
		}
		if owns {
			return ErrOwner
		}
		if _, err := tx.Exec(ctx, `DELETE FROM scripts WHERE owner = $1`, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE activations SET owner = '' WHERE owner = $1 AND owner <> ''`, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM subjects WHERE name = $1`, name)
		return err
	})
	return pgFail(err, "delete subject %q", name)
}

// PutScript implements Store.
func (p *Postgres) PutScript(ctx context.Context, s Script) (Script, error) {
	s.Created = now()
	if s.Source == nil {
		s.Source = []byte{}
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO scripts (name, owner, source, created) SELECT $1, $2, $3, $4 WHERE `+pgOwnerExists,
		s.Name, s.Owner, s.Source, s.Created)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return Script{}, pgFail(err, "put script %q", s.Name)
	}
	return s, nil
}

func scanScript(row pgx.Row) (Script, error) {
	var s Script
	err := row.Scan(&s.Name, &s.Source, &s.Owner, &s.Created)
	s.Created = s.Created.UTC()
	return s, err
}

// GetScript implements Store.
func (p *Postgres) GetScript(ctx context.Context, name string) (Script, error) {
	s, err := scanScript(p.pool.QueryRow(ctx, `SELECT name, source, owner, created FROM scripts WHERE name = $1`, name))
	if err != nil {
		return Script{}, pgFail(err, "get script %q", name)
	}
	return s, nil
}

// ListScripts implements Store.
func (p *Postgres) ListScripts(ctx context.Context) ([]Script, error) {
	rows, _ := p.pool.Query(ctx, `SELECT name, source, owner, created FROM scripts ORDER BY name`)
	ss, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Script, error) { return scanScript(r) })
	if err != nil {
		return nil, pgFail(err, "list scripts")
	}
	if ss == nil {
		ss = []Script{}
	}
	return ss, nil
}

// Ping checks that Postgres answers (Pinger): one round trip on a pooled
// connection, within ctx.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping postgres: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
func (p *Postgres) Close() error {
	p.closed()
	p.closeCoordination()
	p.pool.Close()
	return nil
}

// CreateJoinToken implements Store.
func (p *Postgres) CreateJoinToken(ctx context.Context, jt JoinToken) (JoinToken, error) {
	jt.Created = now()
	jt.Expires = storeTime(jt.Expires)
	var expires *time.Time // NULL: never
	if !jt.Expires.IsZero() {
		expires = &jt.Expires
	}
	var uses *int // NULL: no limit
	if jt.Uses > 0 {
		uses = &jt.Uses
	}
	jt.Used = 0
	_, err := p.pool.Exec(ctx, `INSERT INTO join_tokens (id, secret_hash, created, expires, uses) VALUES ($1, $2, $3, $4, $5)`,
		jt.ID, jt.SecretHash, jt.Created, expires, uses)
	if err != nil {
		return JoinToken{}, pgFail(err, "create join token %q", jt.ID)
	}
	return jt, nil
}

const joinTokenColumns = `id, secret_hash, created, expires, uses, used`

func scanJoinToken(row pgx.Row) (JoinToken, error) {
	var (
		jt      JoinToken
		expires *time.Time
		uses    *int
	)
	err := row.Scan(&jt.ID, &jt.SecretHash, &jt.Created, &expires, &uses, &jt.Used)
	jt.Created = jt.Created.UTC()
	if expires != nil {
		jt.Expires = expires.UTC()
	}
	if uses != nil {
		jt.Uses = *uses
	}
	return jt, err
}

// JoinTokenByHash implements Store. Expiry is compared with the store's
// clock, passed as a parameter, so that Postgres and Embedded agree.
func (p *Postgres) JoinTokenByHash(ctx context.Context, hash []byte) (JoinToken, error) {
	jt, err := scanJoinToken(p.pool.QueryRow(ctx, `
		SELECT `+joinTokenColumns+` FROM join_tokens
		WHERE secret_hash = $1 AND (expires IS NULL OR expires > $2) AND (uses IS NULL OR used < uses)`, hash, now()))
	if err != nil {
		return JoinToken{}, pgFail(err, "join token by hash")
	}
	return jt, nil
}

// JoinAgent implements Store. The UPDATE takes the token's row lock, so
// concurrent joins with one token are counted one after another.
func (p *Postgres) JoinAgent(ctx context.Context, hash []byte, a Agent) (Agent, error) {
	a = prepareAgent(a)
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var id string
		err := tx.QueryRow(ctx, `
			UPDATE join_tokens SET used = used + 1
			WHERE secret_hash = $1 AND (expires IS NULL OR expires > $2) AND (uses IS NULL OR used < uses)
			RETURNING id`, hash, a.Created).Scan(&id)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO agents (`+agentColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, agentValues(a)...)
		return err
	})
	if err != nil {
		return Agent{}, pgFail(err, "join agent %q", a.ID)
	}
	return a, nil
}

// ListJoinTokens implements Store.
func (p *Postgres) ListJoinTokens(ctx context.Context) ([]JoinToken, error) {
	rows, _ := p.pool.Query(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens ORDER BY created, id`)
	jts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (JoinToken, error) { return scanJoinToken(r) })
	if err != nil {
		return nil, pgFail(err, "list join tokens")
	}
	if jts == nil {
		jts = []JoinToken{}
	}
	return jts, nil
}

// DeleteJoinToken implements Store.
func (p *Postgres) DeleteJoinToken(ctx context.Context, id string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM join_tokens WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "delete join token %q", id)
}

// CreateAgent implements Store.
func (p *Postgres) CreateAgent(ctx context.Context, a Agent) (Agent, error) {
	a = prepareAgent(a)
	_, err := p.pool.Exec(ctx, `
		INSERT INTO agents (`+agentColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, agentValues(a)...)
	if err != nil {
		return Agent{}, pgFail(err, "create agent %q", a.ID)
	}
	return a, nil
}

const agentColumns = `id, name, credential_hash, labels, created, last_seen, join_mem_bytes, cordoned, operator_labels, mem_cap_bytes`

// agentValues are a's agentColumns. Postgres has no unsigned integers:
// byte counts go in bigint, so they are bounded by prepareAgent.
func agentValues(a Agent) []any {
	return []any{a.ID, a.Name, a.CredentialHash, a.Labels, a.Created, a.LastSeen,
		int64(a.JoinMemBytes), a.Control.Cordoned, a.Control.Labels, int64(a.Control.MemCapBytes)}
}

// scanAgent reads agentColumns, then the extra destinations if any.
func scanAgent(row pgx.Row, extra ...any) (Agent, error) {
	var a Agent
	var joinMem, memCap int64
	err := row.Scan(append([]any{&a.ID, &a.Name, &a.CredentialHash, &a.Labels, &a.Created, &a.LastSeen,
		&joinMem, &a.Control.Cordoned, &a.Control.Labels, &memCap}, extra...)...)
	a.Labels, a.Control.Labels = prepareLabels(a.Labels), prepareLabels(a.Control.Labels)
	a.JoinMemBytes, a.Control.MemCapBytes = uint64(joinMem), uint64(memCap)
	a.Created, a.LastSeen = a.Created.UTC(), a.LastSeen.UTC()
	return a, err
}

// AgentByID implements Store.
func (p *Postgres) AgentByID(ctx context.Context, id string) (Agent, error) {
	a, err := scanAgent(p.pool.QueryRow(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = $1`, id))
	if err != nil {
		return Agent{}, pgFail(err, "agent %q", id)
	}
	return a, nil
}

// ListAgents implements Store.
func (p *Postgres) ListAgents(ctx context.Context) ([]Agent, error) {
	rows, _ := p.pool.Query(ctx, `SELECT `+agentColumns+` FROM agents ORDER BY name, id`)
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Agent, error) { return scanAgent(r) })
	if err != nil {
		return nil, pgFail(err, "list agents")
	}
	if as == nil {
		as = []Agent{}
	}
	return as, nil
}

// TouchAgent implements Store.
func (p *Postgres) TouchAgent(ctx context.Context, id string, name string, labels []string, seen time.Time) error {
	tag, err := p.pool.Exec(ctx, `UPDATE agents SET name = $2, labels = $3, last_seen = $4 WHERE id = $1`,
		id, name, prepareLabels(labels), storeTime(seen))
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "touch agent %q", id)
}

// SetAgentControl implements Store.
func (p *Postgres) SetAgentControl(ctx context.Context, id string, c AgentControl) (Agent, error) {
	c = prepareControl(c)
	a, err := scanAgent(p.pool.QueryRow(ctx, `
		UPDATE agents SET cordoned = $2, operator_labels = $3, mem_cap_bytes = $4 WHERE id = $1
		RETURNING `+agentColumns, id, c.Cordoned, c.Labels, int64(c.MemCapBytes)))
	if err != nil {
		return Agent{}, pgFail(err, "set agent control %q", id)
	}
	return a, nil
}

// DeleteAgent implements Store.
func (p *Postgres) DeleteAgent(ctx context.Context, id string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM agents WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "delete agent %q", id)
}
