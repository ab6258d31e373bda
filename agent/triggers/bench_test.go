package triggers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
)

// BenchmarkLocalThroughput measures messages/s from a QoS 1 publisher through
// the broker and Local into a no-op Invoke (each message acknowledged after
// Invoke). The publisher keeps at most 500 messages ahead of the invocations,
// below Mosquitto's default queue limit of 1000.
//
//	go test -run '^$' -bench BenchmarkLocalThroughput -benchtime 20000x ./agent/triggers/
func BenchmarkLocalThroughput(b *testing.B) {
	testenv.Mosquitto(b)
	var invoked atomic.Int64
	noop := func(context.Context, Message) error { invoked.Add(1); return nil }
	topic := "wisp/bench/tput/" + testenv.Unique()
	rec := &recorder{}
	probe := func(ctx context.Context, m Message) error {
		if a := m.Payload; string(a[:min(8, len(a))]) == `{"probe"` {
			return rec.invoke(ctx, m)
		}
		return noop(ctx, m)
	}
	start(b, Config{Invoke: probe}, Binding{"bench", "noop", topic})
	pub := publisher(b)
	waitSubscribed(b, pub, rec, topic)
	payload := []byte(`{"reading":42.5,"sensor":"s1"}`)

	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		for int64(i)-invoked.Load() >= 500 {
			time.Sleep(50 * time.Microsecond)
		}
		pub.Publish(topic, 1, false, payload)
	}
	deadline := time.Now().Add(60 * time.Second)
	for invoked.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d messages invoked", invoked.Load(), b.N)
		}
		time.Sleep(100 * time.Microsecond)
	}
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}

// BenchmarkTriggerLatency measures the time from MQTT publish (a timestamp in
// the payload) to the call of Invoke, one message at a time, QoS 1 both ways,
// and reports its percentiles.
//
//	go test -run '^$' -bench BenchmarkTriggerLatency -benchtime 2000x ./agent/triggers/
func BenchmarkTriggerLatency(b *testing.B) {
	testenv.Mosquitto(b)
	got := make(chan time.Duration, 1)
	rec := &recorder{}
	invoke := func(ctx context.Context, m Message) error {
		now := time.Now()
		var p struct {
			T     int64 `json:"t"`
			Probe int   `json:"probe"`
		}
		if json.Unmarshal(m.Payload, &p) == nil && p.T != 0 {
			got <- now.Sub(time.Unix(0, p.T))
			return nil
		}
		return rec.invoke(ctx, m)
	}
	topic := "wisp/bench/lat/" + testenv.Unique()
	start(b, Config{Invoke: invoke}, Binding{"bench", "lat", topic})
	pub := publisher(b)
	waitSubscribed(b, pub, rec, topic)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pub.Publish(topic, 1, false, fmt.Sprintf(`{"t":%d}`, time.Now().UnixNano()))
		select {
		case d := <-got:
			lat = append(lat, d)
		case <-time.After(10 * time.Second):
			b.Fatal("message not invoked within 10s")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
