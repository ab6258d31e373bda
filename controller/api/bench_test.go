package api

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchClients is how many concurrent HTTP clients the benchmarks run.
const benchClients = 32

// BenchmarkGetModule measures GET /v1/fn/_ (auth, store read, JSON) with 32
// concurrent clients over loopback HTTP, on each store.
//
//	go test -run '^$' -bench . -benchtime 5000x ./controller/api/
func BenchmarkGetModule(b *testing.B) {
	for _, ts := range testStores() {
		b.Run(ts.name, func(b *testing.B) {
			e := start(b, ts.open(b))
			runConcurrent(b, e, func(i int) (*http.Request, error) {
				r, err := http.NewRequest("GET", e.base+"/v1/fn/_", nil)
				if err == nil {
					r.Header.Set("Authorization", "Bearer "+e.admin)
				}
				return r, err
			}, http.StatusOK)
		})
	}
}

// BenchmarkCreateFunction measures POST /v1/fn/_ with a 100 KiB wasm
// (hello_wat.wasm padded with a custom section; each request's padding
// differs, so every upload is new code for the store), with 32 concurrent
// clients, on each store. The time includes runtime.Inspect.
func BenchmarkCreateFunction(b *testing.B) {
	module := padModule(b, fixture(b, "hello_wat.wasm"), 100<<10)
	for _, ts := range testStores() {
		b.Run(ts.name, func(b *testing.B) {
			e := start(b, ts.open(b))
			runConcurrent(b, e, func(i int) (*http.Request, error) {
				code := slices.Clone(module)
				binary.LittleEndian.PutUint64(code[len(code)-8:], uint64(i))
				body, ct := multipartBody(b, part{name: "name", value: fmt.Sprintf("f%d", i)}, codePart(code))
				r, err := http.NewRequest("POST", e.base+"/v1/fn/_", bytes.NewReader(body))
				if err == nil {
					r.Header.Set("Authorization", "Bearer "+e.admin)
					r.Header.Set("Content-Type", ct)
				}
				return r, err
			}, http.StatusCreated)
		})
	}
}

// runConcurrent sends b.N requests from benchClients goroutines and reports
// requests/s and the p50/p99 latency. Requests are built before the timer.
func runConcurrent(b *testing.B, e *env, mk func(i int) (*http.Request, error), want int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	defer client.CloseIdleConnections()
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		r, err := mk(i)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = r
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				t0 := time.Now()
				resp, err := client.Do(reqs[i])
				if err != nil {
					failed.CompareAndSwap(nil, err.Error())
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != want {
					failed.CompareAndSwap(nil, fmt.Sprintf("status %d: %s", resp.StatusCode, body))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
