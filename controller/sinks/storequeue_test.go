package sinks

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

// TestStoreQueueParksUnreadableSinks: a queued delivery whose sink copy no
// longer parses is parked (visible with its reason, not retried in a loop);
// the others are delivered as usual.
func TestStoreQueueParksUnreadableSinks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	q := &StoreQueue{Store: st, Now: func() time.Time { return now }}

	good := fnspec.Sink{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://couch:5984/db", Username: "u", Password: "p"}}
	a := store.Activation{ID: "01QUEUE00000000000000000001", Module: "_", Function: "f", Digest: "sha256:" + strings.Repeat("ab", 32),
		Source: "api", Output: []byte(`{"ok":true}`), Started: now.Add(-time.Minute)}
	n, err := st.RecordActivations(ctx, []store.ActivationWithSinks{{Activation: a,
		Sinks: [][]byte{fnspec.EncodeSink(good), []byte(`{"type":"ftp","params":{"url":"ftp://x"}}`)}}})
	if err != nil || n != 1 {
		t.Fatalf("RecordActivations = %d, %v", n, err)
	}

	ds, err := q.Pending(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].SinkIndex != 0 || ds[0].Sink != Params(good.Params) || string(ds[0].Output) != `{"ok":true}` {
		t.Fatalf("Pending = %+v, want only the readable sink 0", ds)
	}
	fails, err := st.SinkFailures(ctx, "_", "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(fails) != 1 || fails[0].SinkIndex != 1 || !strings.HasPrefix(fails[0].LastError, "unreadable sink: Invalid sink") ||
		!fails[0].NextAttempt.Equal(now.Add(ParkUnreadable)) {
		t.Fatalf("SinkFailures = %+v, want sink 1 parked until %v", fails, now.Add(ParkUnreadable))
	}
	// Parked: the next pass does not see it again.
	if ds, err := q.Pending(ctx, 10); err != nil || len(ds) != 1 || ds[0].SinkIndex != 0 {
		t.Fatalf("second Pending = %+v, %v", ds, err)
	}
	if err := q.Delivered(ctx, a.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Delivered(ctx, a.ID, 0); err != nil {
		t.Fatalf("Delivered twice: %v (a delivery already gone is no error)", err)
	}
	if err := q.Failed(ctx, "01QUEUE00000000000000000099", 0, "x", now); err != nil {
		t.Fatalf("Failed of an unknown delivery: %v", err)
	}
	if ds, err := q.Pending(ctx, 10); err != nil || len(ds) != 0 {
		t.Fatalf("Pending after delivery = %+v, %v", ds, err)
	}
}
