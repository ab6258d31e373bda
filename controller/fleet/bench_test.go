package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/scheduler"
)

// BenchmarkDispatch: Dispatcher.Invoke of the C hello function on one agent
// over real QUIC on loopback, in one process (no HTTP): the controller's
// scheduling and wire path plus the agent's.
func BenchmarkDispatch(b *testing.B) {
	c := startController(b)
	startAgent(b, c.addr, c.token, "edge", b.TempDir())
	waitFor(b, "agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(b, c.store, "hello", "hello_c", "")
	req := invoke.Request{Module: "_", Function: "hello", Digest: fn.Digest, Args: json.RawMessage(`{"name":"Ada"}`)}
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

// BenchmarkSchedule1000: one scheduling decision (candidate snapshot and
// scheduler.Pick) over 1,000 connected agents, in memory.
func BenchmarkSchedule1000(b *testing.B) {
	f := &Fleet{sessions: map[string]*Session{}}
	for i := range 1000 {
		s := &Session{ID: fmt.Sprintf("ag_%04d", i), f: f}
		s.hello.Name = fmt.Sprintf("edge%04d", i)
		s.hello.MemTotalBytes = 1 << 30
		s.memAvail.Store(uint64(512+i%7) << 20)
		s.memKnown.Store(true)
		s.connected.Store(true)
		held := map[string]struct{}{}
		if i%3 == 0 {
			held["sha256:aa"] = struct{}{}
		}
		s.digests.Store(&held)
		f.sessions[s.ID] = s
	}
	f.rebuildLive()
	fn := scheduler.Function{Digest: "sha256:aa", CapacityKiB: 1024}
	buf := new(candidateBuf)
	b.ReportAllocs()
	for b.Loop() {
		f.candidates(fn.Digest, nil, buf)
		i, err := scheduler.Pick(buf.cs, fn, nil, nil)
		if err != nil || buf.ss[i] == nil {
			b.Fatal(err)
		}
	}
}
