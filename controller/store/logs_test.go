package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// recordWithLogs records n activations of module m, each with lines log
// lines of size bytes (random text, which does not compress), and no
// output.
func recordWithLogs(t *testing.T, s store.Store, from, n, lines, size int) {
	t.Helper()
	var batch []store.ActivationWithSinks
	at := time.Now().UTC()
	for i := from; i < from+n; i++ {
		a := store.Activation{ID: fmt.Sprintf("01LOGS%020d", i), Module: "m", Function: "f", Source: "api", Started: at}
		for j := range lines {
			a.Logs = append(a.Logs, store.LogLine{Time: at.Add(time.Duration(j) * time.Millisecond), Stream: "console",
				Text: randomText(i*lines+j, size)})
		}
		batch = append(batch, store.ActivationWithSinks{Activation: a})
	}
	if _, err := s.RecordActivations(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
}

func randomText(seed, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = alphabet[x&63]
	}
	return string(b)
}

func volume(t *testing.T, s store.Store) store.ActivationVolume {
	t.Helper()
	v, err := s.ActivationVolume(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestEmbeddedLogsLeaveWithActivations: the logs live in their
// activation's record, so pruning it gives their pages back to the file's
// free list (ActivationVolume counts the pages in use).
func TestEmbeddedLogsLeaveWithActivations(t *testing.T) {
	t.Parallel()
	s, _ := openEmbedded(t)
	empty := volume(t, s)
	recordWithLogs(t, s, 0, 40, 100, 655)
	full := volume(t, s)
	if full.Bytes-empty.Bytes < 40*100*655 {
		t.Fatalf("40 activations with 64 KiB of log take %d bytes", full.Bytes-empty.Bytes)
	}
	if _, err := s.PruneActivationsBefore(t.Context(), "01LOGS~", 0); err != nil {
		t.Fatal(err)
	}
	if pruned := volume(t, s); pruned.Count != 0 || pruned.Bytes-empty.Bytes > 64<<10 {
		t.Fatalf("after pruning every activation: %+v (empty %+v, full %+v): their logs stayed", pruned, empty, full)
	}
}

// TestPostgresLogsLeaveWithActivations: the logs are a column of their
// activation's row: pruning the rows leaves no log anywhere, and VACUUM
// FULL gives the room back (the table and its TOAST shrink to empty).
func TestPostgresLogsLeaveWithActivations(t *testing.T) {
	t.Parallel()
	dsn := testpg.Schema(t, 0)
	s := openPostgresDSN(t, dsn)
	defer s.Close()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	vacuumed := func() int64 {
		if _, err := conn.Exec(ctx, "VACUUM FULL activations"); err != nil {
			t.Fatal(err)
		}
		return volume(t, s).Bytes
	}
	empty := vacuumed()
	recordWithLogs(t, s, 0, 40, 100, 655)
	if full := volume(t, s); full.Bytes-empty < 40*100*655 {
		t.Fatalf("40 activations with 64 KiB of log take %d bytes", full.Bytes-empty)
	}
	if _, err := s.PruneActivationsBefore(ctx, "01LOGS~", 0); err != nil {
		t.Fatal(err)
	}
	var left int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(sum(octet_length(logs)), 0) FROM activations").Scan(&left); err != nil || left != 0 {
		t.Fatalf("after pruning: %d bytes of logs left (%v)", left, err)
	}
	// VACUUM FULL keeps dead rows that a transaction still open anywhere
	// in the database may see (other tests run in parallel on other
	// schemas): retry until the database-wide horizon has moved past them.
	var after int64
	deadline := time.Now().Add(30 * time.Second)
	for after = vacuumed(); after > empty && time.Now().Before(deadline); after = vacuumed() {
		time.Sleep(200 * time.Millisecond)
	}
	if after > empty {
		t.Fatalf("after pruning and VACUUM FULL: %d bytes, empty was %d", after, empty)
	}
}

// TestLogBytesPerActivation reports what the log of a typical activation
// (3 lines of about 40 bytes) adds to its record in each store, against
// the same activation without a log. docs/decisions.md quotes it.
func TestLogBytesPerActivation(t *testing.T) {
	const n = 2000
	typical := func(i int, logs bool) store.ActivationWithSinks {
		at := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC).Add(time.Duration(i) * 10 * time.Millisecond)
		a := store.Activation{ID: fmt.Sprintf("01BYTES%019d", i), Module: "_", Function: "hello", Digest: "sha256:" + randomText(i, 64),
			Agent: "ag_0123456789abcdef", Source: "api", Output: []byte(`{"payload":"Hello World!"}`), Started: at, Duration: time.Millisecond}
		if logs {
			for j, text := range []string{"handling request 4711 for user ada", "fetched 3 items from the cache in 2ms", "answering with 26 bytes"} {
				a.Logs = append(a.Logs, store.LogLine{Time: at.Add(time.Duration(300+j*150) * time.Microsecond), Stream: "console", Text: text})
			}
		}
		return store.ActivationWithSinks{Activation: a}
	}
	measure := func(t *testing.T, s store.Store, settle func()) (without, with float64) {
		for _, logs := range []bool{false, true} {
			settle()
			before := volume(t, s)
			var batch []store.ActivationWithSinks
			for i := range n {
				batch = append(batch, typical(i+n*btoi(logs), logs))
			}
			if _, err := s.RecordActivations(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
			settle()
			per := float64(volume(t, s).Bytes-before.Bytes) / n
			if logs {
				with = per
			} else {
				without = per
			}
		}
		return without, with
	}
	t.Run("embedded", func(t *testing.T) {
		s, _ := openEmbedded(t)
		without, with := measure(t, s, func() {})
		t.Logf("embedded: %.0f bytes per activation without a log, %.0f with 3 lines (%d bytes of text): +%.0f", without, with, 34+37+23, with-without)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testpg.Schema(t, 0)
		s := openPostgresDSN(t, dsn)
		defer s.Close()
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		without, with := measure(t, s, func() {
			if _, err := conn.Exec(t.Context(), "VACUUM activations"); err != nil {
				t.Fatal(err)
			}
		})
		var col float64
		if err := conn.QueryRow(t.Context(), "SELECT avg(pg_column_size(logs)) FROM activations WHERE logs IS NOT NULL").Scan(&col); err != nil {
			t.Fatal(err)
		}
		t.Logf("postgres: %.0f bytes per activation without a log, %.0f with 3 lines (%d bytes of text): +%.0f; the logs column holds %.0f bytes",
			without, with, 34+37+23, with-without, col)
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
