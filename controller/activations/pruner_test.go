package activations

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
)

// TestPrunerEnforcesRetention: on each real store, one pass removes
// exactly the records beyond each bound, keeps the held ones, counts what
// it removed by reason and reports the volume left.
func TestPrunerEnforcesRetention(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			ctx := t.Context()
			now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
			// 10 records 10 days old (0..9), then 30 from an hour ago,
			// one a minute (10..39): of functions f0 (i%3 == 0), f1, f2.
			var ids []string
			var batch []store.ActivationWithSinks
			for i := range 40 {
				at := now.Add(-time.Hour + time.Duration(i-10)*time.Minute)
				if i < 10 {
					at = now.Add(-10*24*time.Hour + time.Duration(i)*time.Minute)
				}
				// Not activationid.New: its ids never go back in time within
				// a process, and an earlier test may have made later ones.
				id := activationid.First(at)
				ids = append(ids, id)
				a := store.ActivationWithSinks{Activation: store.Activation{ID: id, Module: "_", Function: fmt.Sprint("f", i%3),
					Source: "api", Output: []byte(`{}`), Started: at}}
				if i == 4 || i == 13 { // held by a delivery
					a.Sinks = [][]byte{[]byte(`{"type":"couchdb"}`)}
				}
				batch = append(batch, a)
			}
			if n, err := s.RecordActivations(ctx, batch); err != nil || n != 40 {
				t.Fatalf("RecordActivations: %d, %v", n, err)
			}

			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			p := NewPruner(PrunerConfig{Store: s, Batch: 4, Metrics: m, Now: func() time.Time { return now },
				Retention: Retention{MaxAge: 7 * 24 * time.Hour, MaxPerFunction: 8, MaxCount: 20}})
			done, err := p.Prune(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Age: 0..9 go but the held 4 (9 records).
			// Per function, newest 8 kept: f0 = 12 15 18 .. 39 (10): 12 and
			// 15 go; f1 = 4 10 13 16 .. 37 (11): of the oldest three, 4 and 13
			// are held, 10 goes; f2 = 11 14 .. 38 (10): 11 and 14 go (5).
			// In all, newest 20 kept: 4, 13 and 16..39 are left, the newest
			// 20 are 20..39, so 16..19 go (4); the held 4 and 13 stay.
			left := map[int]bool{}
			for i := range 40 {
				left[i] = true
			}
			for _, i := range []int{0, 1, 2, 3, 5, 6, 7, 8, 9, 12, 15, 10, 11, 14, 16, 17, 18, 19} {
				delete(left, i)
			}
			want := []string{}
			for i := range 40 {
				if left[i] {
					want = append(want, ids[i])
				}
			}
			got := []string{}
			as, err := s.ListActivations(ctx, store.ActivationFilter{Limit: store.MaxActivationLimit})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				got = append(got, a.ID)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("left %d records:\n%v\nwant %d:\n%v", len(got), got, len(want), want)
			}
			if done != (Pruned{Age: 9, PerFunction: 5, Count: 4}) {
				t.Fatalf("pass removed %+v", done)
			}
			for reason, want := range map[string]float64{reasonAge: 9, reasonFunctionCount: 5, reasonCount: 4} {
				if got := testutil.ToFloat64(m.prunedTotal.WithLabelValues(reason)); got != want {
					t.Errorf("pruned{reason=%q} = %v, want %v", reason, got, want)
				}
			}
			if got := testutil.ToFloat64(m.stored); got != 22 {
				t.Errorf("stored gauge %v, want 22", got)
			}
			if testutil.ToFloat64(m.storedBytes) <= 0 {
				t.Error("stored bytes gauge not set")
			}

			// A second pass finds nothing; the held records go once delivered.
			if done, err := p.Prune(ctx); err != nil || done != (Pruned{}) {
				t.Fatalf("second pass: %+v, %v", done, err)
			}
			if err := s.DeliveryDone(ctx, ids[4], 0); err != nil {
				t.Fatal(err)
			}
			if err := s.DeliveryDone(ctx, ids[13], 0); err != nil {
				t.Fatal(err)
			}
			if done, err := p.Prune(ctx); err != nil || done != (Pruned{Age: 1, Count: 1}) {
				t.Fatalf("pass after the deliveries: %+v, %v", done, err)
			}
		})
	}
}

// TestPrunerRunStops: Run makes a pass at once and returns when its context
// is done; a zero Retention removes nothing but still reports the volume.
func TestPrunerRunStops(t *testing.T) {
	s := stores[0].open(t)
	if _, err := s.RecordActivation(t.Context(), store.Activation{ID: activationid.New(time.Unix(0, 0)),
		Module: "_", Function: "f"}, nil); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPruner(PrunerConfig{Store: s, Interval: time.Hour, Metrics: m})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.stored) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no pass at start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n, err := s.ListActivations(t.Context(), store.ActivationFilter{}); err != nil || len(n) != 1 {
		t.Fatalf("a zero Retention removed records: %d, %v", len(n), err)
	}
}
