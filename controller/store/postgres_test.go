package store_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/store/storetest"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// pgAdmin and pgSchema: see internal/testing/testpg.
func pgAdmin(t testing.TB) (*pgx.Conn, string) { return testpg.Admin(t) }

func pgSchema(t testing.TB) string { return testpg.Schema(t, 4) }

func openPostgresDSN(t testing.TB, dsn string) *store.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenPostgres(ctx, dsn, testLogger(t))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	return s
}

// openPostgres is the storetest.Opener of Postgres: a fresh schema per test.
func openPostgres(t *testing.T) (store.Store, func(*testing.T) store.Store) {
	dsn := pgSchema(t)
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := openPostgresDSN(t, dsn)
		t.Cleanup(func() { s.Close() }) // runs before the schema is dropped
		return s
	}
	return open(t), open
}

func TestPostgresContract(t *testing.T) {
	t.Parallel()
	conn, _ := pgAdmin(t) // skip once, not in every subtest
	conn.Close(context.Background())
	storetest.Run(t, openPostgres)
}

// TestPostgresUnreadableSettings: fnspec's answer to bad stored data, on
// a row changed with SQL.
func TestPostgresUnreadableSettings(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	s := openPostgresDSN(t, dsn)
	t.Cleanup(func() { s.Close() })
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	storetest.UnreadableSettings(t, s, func(t *testing.T, module, name, field string, raw []byte) store.Store {
		tag, err := pool.Exec(t.Context(), `UPDATE functions f SET `+pgx.Identifier{field}.Sanitize()+` = $3
			FROM modules m WHERE m.id = f.module_id AND m.name = $1 AND f.name = $2`, module, name, raw)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("corrupt %s: %v (%d rows)", field, err, tag.RowsAffected())
		}
		return s
	})
}

// TestPostgresConcurrentMigration starts several stores on one fresh schema
// at the same moment: all must open, and each migration must be applied once.
func TestPostgresConcurrentMigration(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	const n = 4
	stores := make([]*store.Postgres, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = store.OpenPostgres(t.Context(), dsn, testLogger(t))
		})
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Errorf("store %d: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	wantOneRowPerMigration(t, dsn)
	mods, err := stores[0].ListModules(t.Context())
	if err != nil || len(mods) != 1 || mods[0].Name != store.DefaultModule {
		t.Fatalf("ListModules = %v, %v; want just the default module", mods, err)
	}
}

func wantOneRowPerMigration(t *testing.T, dsn string) []time.Time {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, _ := pool.Query(t.Context(), `SELECT version, applied FROM schema_migrations ORDER BY version`)
	type row struct {
		Version int32
		Applied time.Time
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("schema_migrations is empty")
	}
	var applied []time.Time
	for i, r := range got {
		if r.Version != int32(i+1) {
			t.Fatalf("schema_migrations versions = %+v, want 1..n once each", got)
		}
		applied = append(applied, r.Applied)
	}
	return applied
}

func TestPostgresMigrationIdempotent(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	s := openPostgresDSN(t, dsn)
	if err := s.CreateModule(t.Context(), "m", ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	first := wantOneRowPerMigration(t, dsn)

	s = openPostgresDSN(t, dsn)
	defer s.Close()
	again := wantOneRowPerMigration(t, dsn)
	if len(first) != len(again) || !first[0].Equal(again[0]) {
		t.Fatalf("reopening re-applied migrations: %v then %v", first, again)
	}
	if mods, err := s.ListModules(t.Context()); err != nil || strings.Join(store.ModuleNames(mods), ",") != "_,m" {
		t.Fatalf("ListModules after reopen = %v, %v", mods, err)
	}
}

// TestPostgresUpgradesFromVersion1 lays out a schema as a controller that
// knew only migration 1 left it, with data, then opens it: the missing
// migrations are applied once, the data is kept, agents can join and
// activations are recorded.
func TestPostgresUpgradesFromVersion1(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	ctx := t.Context()
	init, err := os.ReadFile(filepath.Join("migrations", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	code, digest := storetest.Code("v1")
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// As migrate did in the build that knew only 0001.
		for _, sql := range []string{
			`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`,
			string(init),
			`INSERT INTO schema_migrations (version, name) VALUES (1, 'init')`,
			`INSERT INTO code (digest, bytes) VALUES ('` + digest + `', '\x` + hex.EncodeToString(code) + `')`,
			`INSERT INTO functions (module_id, name, digest, size, abi, created, updated)
			 SELECT id, 'f', '` + digest + `', ` + fmt.Sprint(len(code)) + `, 'funless-v1', now(), now() FROM modules WHERE name = '_'`,
			`INSERT INTO subjects (name, token_hash, admin, created) VALUES ('admin', '\x01', true, now())`,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
		return nil
	})
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}

	s := openPostgresDSN(t, dsn)
	defer s.Close()
	if applied := wantOneRowPerMigration(t, dsn); len(applied) < 2 {
		t.Fatalf("%d migrations recorded after upgrade, want at least 2", len(applied))
	}
	if fn, err := s.GetFunction(ctx, store.DefaultModule, "f"); err != nil || fn.Digest != digest {
		t.Fatalf("GetFunction after upgrade = %+v, %v", fn, err)
	}
	if got, err := s.Code(ctx, digest); err != nil || string(got) != string(code) {
		t.Fatalf("Code after upgrade = %q, %v", got, err)
	}
	if sub, err := s.SubjectByTokenHash(ctx, []byte{1}); err != nil || sub.Name != "admin" || !sub.Admin {
		t.Fatalf("SubjectByTokenHash after upgrade = %+v, %v", sub, err)
	}
	a, err := s.CreateAgent(ctx, store.Agent{ID: "ag_0000000000000001", Name: "edge", CredentialHash: []byte{2}})
	if err != nil {
		t.Fatalf("CreateAgent after upgrade: %v", err)
	}
	if as, err := s.ListAgents(ctx); err != nil || len(as) != 1 || as[0].ID != a.ID {
		t.Fatalf("ListAgents after upgrade = %+v, %v", as, err)
	}
	if _, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_00000001", SecretHash: []byte{3}}); err != nil {
		t.Fatalf("CreateJoinToken after upgrade: %v", err)
	}
	act := store.Activation{ID: "01UPGRADE0000000000000000A", Module: store.DefaultModule, Function: "f", Digest: digest,
		Output: []byte(`1`), Started: time.Now()}
	if created, err := s.RecordActivation(ctx, act, [][]byte{[]byte(`{"type":"couchdb"}`)}); err != nil || !created {
		t.Fatalf("RecordActivation after upgrade: %v, %v", created, err)
	}
	if ds, err := s.PendingDeliveries(ctx, time.Now().Add(time.Minute), 0); err != nil || len(ds) != 1 || ds[0].ActivationID != act.ID {
		t.Fatalf("PendingDeliveries after upgrade = %+v, %v", ds, err)
	}
	if created, err := s.QuarantineDigest(ctx, store.Quarantine{Digest: digest, Reason: "r", Agent: a.ID, Since: time.Now()}); err != nil || !created {
		t.Fatalf("QuarantineDigest after upgrade: %v, %v", created, err)
	}
}

// TestPostgresUnreachable needs no server: opening a closed port fails
// promptly with an error saying where it tried.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := store.OpenPostgres(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=5", nil)
	if err == nil {
		s.Close()
		t.Fatal("OpenPostgres of a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error %q does not say where it tried", err)
	}
	if _, err := store.OpenPostgres(ctx, "postgres://%zz", nil); err == nil {
		t.Fatal("OpenPostgres accepted a malformed DSN")
	}
}

// TestPostgresEmptyDSNUsesEnvironment opens with dsn "" and PG* variables.
func TestPostgresEmptyDSNUsesEnvironment(t *testing.T) {
	dsn := pgSchema(t) // before Setenv: t.Setenv forbids t.Parallel anyway
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pcfg.ConnConfig
	schema := cfg.RuntimeParams["search_path"]
	t.Setenv("PGHOST", cfg.Host)
	t.Setenv("PGPORT", fmt.Sprint(cfg.Port))
	t.Setenv("PGUSER", cfg.User)
	t.Setenv("PGPASSWORD", cfg.Password)
	t.Setenv("PGDATABASE", cfg.Database)
	t.Setenv("PGSSLMODE", "prefer")
	if cfg.TLSConfig == nil {
		t.Setenv("PGSSLMODE", "disable")
	}
	t.Setenv("PGOPTIONS", "-c search_path="+schema)
	s := openPostgresDSN(t, "")
	defer s.Close()
	if err := s.CreateModule(t.Context(), "from_env", ""); err != nil {
		t.Fatal(err)
	}
	// The tables went to the test schema, not to public.
	wantOneRowPerMigration(t, dsn)
}

func BenchmarkPostgresGetFunction(b *testing.B) {
	dsn := pgSchema(b)
	ctx := b.Context()
	s, err := store.OpenPostgres(ctx, dsn, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchGetFunction(b, s)
}

func BenchmarkEmbeddedGetFunction(b *testing.B) {
	s, err := store.OpenEmbedded(b.TempDir()+"/wisp.db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchGetFunction(b, s)
}

func BenchmarkEmbeddedCreateFunction(b *testing.B) {
	s, err := store.OpenEmbedded(b.TempDir()+"/wisp.db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchCreateFunction(b, s)
}

func BenchmarkPostgresCreateFunction(b *testing.B) {
	s, err := store.OpenPostgres(b.Context(), pgSchema(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchCreateFunction(b, s)
}

func benchGetFunction(b *testing.B, s store.Store) {
	ctx := b.Context()
	code, digest := storetest.Code("bench")
	if _, err := s.CreateFunction(ctx, store.Function{Module: "_", Name: "f", Digest: digest, ABI: "funless-v1"}, code); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetFunction(ctx, "_", "f"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchCreateFunction(b *testing.B, s store.Store) {
	ctx := b.Context()
	code, digest := storetest.Code(strings.Repeat("x", 64<<10)) // a small 64 KiB module
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.CreateFunction(ctx, store.Function{Module: "_", Name: fmt.Sprintf("f%d", i), Digest: digest}, code); err != nil {
			b.Fatal(err)
		}
	}
}

// The RecordActivations benchmarks record batches of 500 new activations,
// each with one sink, as an outbox drain after a partition would, and report
// activations/s. Run them with
//
//	go test -run '^$' -bench RecordActivations -benchtime 20x ./controller/store
func BenchmarkPostgresRecordActivations(b *testing.B) {
	s, err := store.OpenPostgres(b.Context(), pgSchema(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchRecordActivations(b, s)
}

func BenchmarkEmbeddedRecordActivations(b *testing.B) {
	s, err := store.OpenEmbedded(b.TempDir()+"/wisp.db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchRecordActivations(b, s)
}

func benchRecordActivations(b *testing.B, s store.Store) {
	const batchSize = 500
	ctx := b.Context()
	sinks := [][]byte{[]byte(`{"type":"couchdb","params":{"url":"http://127.0.0.1:5984/results","username":"wisp","password":"secret"}}`)}
	output := []byte(`{"greeting":"hello, world","n":12345,"ok":true}`)
	batch := make([]store.ActivationWithSinks, batchSize)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		started := time.Now()
		for i := range batch {
			batch[i] = store.ActivationWithSinks{Activation: store.Activation{
				ID: activationid.New(started), Module: "_", Function: "hello", Digest: "sha256:" + strings.Repeat("0", 64),
				Agent: "ag_0000000000000001", Source: "local-mqtt", Output: output, Started: started, Duration: 150 * time.Microsecond,
			}, Sinks: sinks}
		}
		b.StartTimer()
		n, err := s.RecordActivations(ctx, batch)
		if err != nil || n != batchSize {
			b.Fatalf("RecordActivations = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "activations/s")
}
