package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
)

// The prune benchmarks measure what retention costs on a store holding
// 100,000 activations (100 functions, outputs of 200 bytes):
//
//   - PassNothingToPrune: a retention pass in its steady state, when no
//     record is out of bounds (the three prune calls and ActivationVolume);
//   - Batch500: one prune call removing 500 records, which is how long it
//     holds its transaction (in bbolt, the one write lock).
//
// Run them with
//
//	go test -run '^$' -bench Prune -benchtime 20x ./controller/store
func BenchmarkPostgresPrune(b *testing.B) {
	s, err := store.OpenPostgres(b.Context(), pgSchema(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchPrune(b, s)
}

func BenchmarkEmbeddedPrune(b *testing.B) {
	s, err := store.OpenEmbedded(b.TempDir()+"/wisp.db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchPrune(b, s)
}

func benchPrune(b *testing.B, s store.Store) {
	const (
		stored    = 100_000
		functions = 100
		batchSize = 500
	)
	ctx := b.Context()
	output := []byte(`{"greeting":"` + strings.Repeat("x", 180) + `"}`)
	record := func(n int, at time.Time) {
		batch := make([]store.ActivationWithSinks, 0, 1000)
		for i := range n {
			batch = append(batch, store.ActivationWithSinks{Activation: store.Activation{
				ID: activationid.New(at), Module: "_", Function: fmt.Sprint("f", i%functions), Digest: "sha256:" + strings.Repeat("0", 64),
				Agent: "ag_0000000000000001", Source: "api", Output: output, Started: at, Duration: time.Millisecond,
			}})
			if len(batch) == cap(batch) || i == n-1 {
				if _, err := s.RecordActivations(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	}
	record(stored, time.Now())
	b.Run("PassNothingToPrune", func(b *testing.B) {
		before := activationid.First(time.Now().Add(-time.Hour))
		for b.Loop() {
			for _, prune := range []func() (int, error){
				func() (int, error) { return s.PruneActivationsBefore(ctx, before, batchSize) },
				func() (int, error) { return s.PruneActivationsBeyondPerFunction(ctx, stored, batchSize) },
				func() (int, error) { return s.PruneActivationsBeyond(ctx, stored, batchSize) },
			} {
				if n, err := prune(); err != nil || n != 0 {
					b.Fatalf("prune = %d, %v", n, err)
				}
			}
			if v, err := s.ActivationVolume(ctx); err != nil || v.Count != stored {
				b.Fatalf("ActivationVolume = %+v, %v", v, err)
			}
		}
	})
	b.Run("Batch500", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			record(batchSize, time.Now())
			b.StartTimer()
			if n, err := s.PruneActivationsBeyond(ctx, stored, batchSize); err != nil || n != batchSize {
				b.Fatalf("PruneActivationsBeyond = %d, %v", n, err)
			}
		}
	})
}
