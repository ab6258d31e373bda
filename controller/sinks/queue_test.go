package sinks

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestMemQueue(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	q := NewMemQueue()
	q.now = func() time.Time { return now }
	ids := func(ds []Delivery) (s []string) {
		for _, d := range ds {
			s = append(s, fmt.Sprintf("%s/%d", d.ActivationID, d.SinkIndex))
		}
		return s
	}
	if n := q.Add(Delivery{ActivationID: "a", SinkIndex: 0}, Delivery{ActivationID: "a", SinkIndex: 1}, Delivery{ActivationID: "b"}); n != 3 {
		t.Fatalf("Add = %d, want 3", n)
	}
	if n := q.Add(Delivery{ActivationID: "a", SinkIndex: 1}, Delivery{ActivationID: "c"}); n != 1 {
		t.Fatalf("Add with a duplicate = %d, want 1", n)
	}
	ds, _ := q.Pending(ctx, 2)
	if got := fmt.Sprint(ids(ds)); got != "[a/0 a/1]" {
		t.Fatalf("Pending(2) = %s", got)
	}
	q.Failed(ctx, "a", 0, "boom", now.Add(time.Second))
	q.Delivered(ctx, "a", 1)
	ds, _ = q.Pending(ctx, 10)
	if got := fmt.Sprint(ids(ds)); got != "[b/0 c/0]" {
		t.Fatalf("Pending after a failure and a delivery = %s", got)
	}
	if msg, attempts, ok := q.LastError("a", 0); !ok || msg != "boom" || attempts != 1 {
		t.Fatalf("LastError = %q %d %v", msg, attempts, ok)
	}
	now = now.Add(time.Second)
	ds, _ = q.Pending(ctx, 10)
	if got := fmt.Sprint(ids(ds)); got != "[a/0 b/0 c/0]" || ds[0].Attempts != 1 {
		t.Fatalf("Pending once the retry is due = %s (attempts %d)", got, ds[0].Attempts)
	}
	// Marking what is not there is not an error.
	if err := q.Delivered(ctx, "zz", 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Failed(ctx, "zz", 0, "x", now); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 3 {
		t.Fatalf("Len = %d, want 3", q.Len())
	}
}

// TestMemQueueConcurrent exercises compaction under the race detector.
func TestMemQueueConcurrent(t *testing.T) {
	ctx := context.Background()
	q := NewMemQueue()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprintf("%d-%04d", w, i)
				q.Add(Delivery{ActivationID: id})
				if ds, _ := q.Pending(ctx, 3); len(ds) == 0 {
					t.Error("Pending returned nothing with deliveries queued")
				}
				q.Delivered(ctx, id, 0)
			}
		})
	}
	wg.Wait()
	if q.Len() != 0 {
		t.Fatalf("Len = %d, want 0", q.Len())
	}
	if ds, _ := q.Pending(ctx, 10); len(ds) != 0 {
		t.Fatalf("Pending = %d deliveries, want 0", len(ds))
	}
}
