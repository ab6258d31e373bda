package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/store/storetest"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// feedFixture is a Postgres store watched by its change feed, a second
// store on the same schema (another controller), and a pool for SQL by
// hand in a session whose search_path is not the schema.
type feedFixture struct {
	watched, other *store.Postgres
	changes        *storetest.ChangeRecorder
	sql            *pgxpool.Pool // search_path "public"
	schema         string
}

func newFeedFixture(t *testing.T) *feedFixture {
	t.Helper()
	dsn := pgSchema(t)
	f := &feedFixture{watched: openPostgresDSN(t, dsn), other: openPostgresDSN(t, dsn)}
	t.Cleanup(func() { f.watched.Close(); f.other.Close() })
	_, base := pgAdmin(t)
	pool, err := pgxpool.New(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f.sql = pool
	sp, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := sp.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&f.schema); err != nil {
		t.Fatal(err)
	}
	f.changes = storetest.RecordChanges(t, f.watched)
	f.changes.Wait(t, 0, 10*time.Second, store.Change{Kind: store.ChangeAll})
	return f
}

// TestPostgresFeedSeesOtherControllers: changes made through another
// store on the same database, and by hand in SQL from a session with
// another search_path, are reported.
func TestPostgresFeedSeesOtherControllers(t *testing.T) {
	t.Parallel()
	f := newFeedFixture(t)
	ctx := t.Context()
	n := f.changes.Len()
	code, digest := storetest.Code("other")
	_, err := f.other.CreateFunction(ctx, store.Function{Module: "_", Name: "f", Digest: digest, ABI: "funless-v1"}, code)
	if err != nil {
		t.Fatal(err)
	}
	n = f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeFunctions, Key: "_/f"})
	a, err := f.other.CreateAgent(ctx, store.Agent{ID: "ag_0000000000000001", Name: "edge", CredentialHash: []byte("cred")})
	if err != nil {
		t.Fatal(err)
	}
	n = f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeAgents, Key: a.ID})
	tag, err := f.sql.Exec(ctx, `UPDATE `+f.schema+`.agents SET cordoned = true WHERE id = $1`, a.ID)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("cordon by hand: %v, %d rows", err, tag.RowsAffected())
	}
	n = f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeAgents, Key: a.ID})
	if _, err := f.sql.Exec(ctx, `DELETE FROM `+f.schema+`.functions`); err != nil {
		t.Fatalf("delete by hand: %v", err)
	}
	f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeFunctions, Key: "_/f"})
}

// TestPostgresFeedReconnects: a feed whose connection is killed
// (pg_terminate_backend) connects again, reports ChangeAll, and then
// reports changes again.
func TestPostgresFeedReconnects(t *testing.T) {
	t.Parallel()
	f := newFeedFixture(t)
	ctx := t.Context()
	for round := range 2 {
		n := f.changes.Len()
		var killed int
		testwait.Until(t, 10*time.Second, func() error {
			err := f.sql.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
				store.FeedApplicationName(f.schema)).Scan(&killed)
			if err == nil && killed != 1 {
				err = fmt.Errorf("round %d: %d feed connections found, want 1", round, killed)
			}
			return err
		})
		n = f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeAll})
		name := "after" + string(rune('a'+round))
		if err := f.other.CreateModule(ctx, name, ""); err != nil {
			t.Fatal(err)
		}
		f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeModules, Key: name})
	}
}

// TestPostgresFeedIgnoresGarbage: notifications sent by hand that are not
// the triggers' (another schema, unknown kinds, no kind, a huge key) are
// not reported as changes, or only as what they can mean; a valid one
// sent after them is.
func TestPostgresFeedIgnoresGarbage(t *testing.T) {
	t.Parallel()
	f := newFeedFixture(t)
	ctx := t.Context()
	n := f.changes.Len()
	huge := strings.Repeat("k", 7000)
	for _, payload := range []string{
		"", "garbage", ":::", "\x01\x02", f.schema, f.schema + ":", f.schema + ":bogus:x",
		"other_schema:functions:_/f", f.schema + "x:functions:_/f", f.schema + ":functions:" + huge,
		f.schema + ":agents" + huge,
	} {
		if _, err := f.sql.Exec(ctx, `SELECT pg_notify('wisp_changes', $1)`, payload); err != nil {
			t.Fatalf("notify %.40q: %v", payload, err)
		}
	}
	if _, err := f.sql.Exec(ctx, `SELECT pg_notify('wisp_changes', $1)`, f.schema+":scripts:marker"); err != nil {
		t.Fatal(err)
	}
	f.changes.Wait(t, n, 10*time.Second, store.Change{Kind: store.ChangeScripts, Key: "marker"})
	got := f.changes.Since(n)
	want := []store.Change{{Kind: store.ChangeFunctions}, {Kind: store.ChangeScripts, Key: "marker"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("reported %v, want %v (the huge key dropped, the rest ignored)", got, want)
	}
}

// TestPostgresFeedEndsWithTheStore: WatchChanges returns ErrClosed when
// the store closes under it.
func TestPostgresFeedEndsWithTheStore(t *testing.T) {
	t.Parallel()
	s := openPostgresDSN(t, pgSchema(t))
	done := make(chan error, 1)
	started := make(chan struct{}, 1)
	go func() {
		done <- s.WatchChanges(context.Background(), func(store.Change) {
			select {
			case started <- struct{}{}:
			default:
			}
		})
	}()
	<-started
	s.Close()
	select {
	case err := <-done:
		if err != store.ErrClosed {
			t.Fatalf("WatchChanges returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchChanges still runs 10s after Close")
	}
}
