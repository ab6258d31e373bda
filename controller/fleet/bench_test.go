package fleet

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/api"
)

// BenchmarkDispatch: Dispatcher.Invoke of the C hello function on one agent
// over real QUIC on loopback, in one process (no HTTP): the controller's
// scheduling and wire path plus the agent's.
func BenchmarkDispatch(b *testing.B) {
	c := startController(b)
	startAgent(b, c.addr, c.token, "edge", b.TempDir())
	waitFor(b, "agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(b, c.store, "hello", "hello_c", "")
	req := api.InvokeRequest{Module: "_", Function: "hello", Digest: fn.Digest, Args: json.RawMessage(`{"name":"Ada"}`)}
	if _, err := c.disp.Invoke(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.disp.Invoke(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}
