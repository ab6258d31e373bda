// Package testpg gives tests a Postgres of their own: a fresh schema in the
// database named by WISP_TEST_DATABASE_URL, dropped when the test ends, so
// tests run in parallel without seeing each other. When Postgres is not
// there the test is skipped (or fails under WISP_REQUIRE_SERVICES=1). It is
// test support only; production code must not import it.
package testpg

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wispfn/wisp/internal/testing/testenv"
)

// DefaultURL is used when WISP_TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Admin connects to the test database, or skips t (fails it under
// WISP_REQUIRE_SERVICES=1) when Postgres is not there. It returns the
// connection and the base DSN.
func Admin(t testing.TB) (*pgx.Conn, string) {
	t.Helper()
	base := testenv.Env("WISP_TEST_DATABASE_URL", DefaultURL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		testenv.Missing(t, "PostgreSQL", fmt.Sprintf(
			"cannot connect to WISP_TEST_DATABASE_URL (default %s; run make services): %v", DefaultURL, err))
	}
	return conn, base
}

// Schema creates a uniquely named schema, drops it on cleanup, and returns
// a DSN whose connections use it (search_path), with at most poolMax
// connections per pool (0: pgx's default).
func Schema(t testing.TB, poolMax int) string {
	t.Helper()
	conn, base := Admin(t)
	defer conn.Close(context.Background())
	schema := "wisp_test_" + strings.ToLower(rand.Text()[:12])
	ident := pgx.Identifier{schema}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	params := map[string]string{"search_path": schema}
	if poolMax > 0 {
		params["pool_max_conns"] = strconv.Itoa(poolMax)
	}
	return WithParams(t, base, params)
}

// WithParams adds connection parameters to a URL or key=value DSN.
func WithParams(t testing.TB, dsn string, params map[string]string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("WISP_TEST_DATABASE_URL: %v", err)
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for k, v := range params {
		dsn += fmt.Sprintf(" %s='%s'", k, v)
	}
	return dsn
}
