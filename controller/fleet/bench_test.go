package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
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

// schedFleet is a fleet of n connected sessions in memory, a third of
// them holding sha256:aa, with memory on seven levels, indexed.
func schedFleet(n int) *Fleet {
	f := &Fleet{sessions: map[string]*Session{}}
	f.index.init(f.current, func(fn func()) { fn() })
	var ss []*Session
	for i := range n {
		s := &Session{ID: fmt.Sprintf("ag_%05d", i), f: f}
		s.hello.Name = fmt.Sprintf("edge%05d", i)
		s.hello.MemTotalBytes = 1 << 30
		s.memAvail.Store(uint64(512+i%7) << 20)
		s.memKnown.Store(true)
		s.connected.Store(true)
		if i%3 == 0 {
			s.digests.Store(newDigestSet("sha256:aa"))
		} else {
			s.digests.Store(newDigestSet())
		}
		f.sessions[s.ID] = s
		ss = append(ss, s)
	}
	f.index.update(ss...)
	return f
}

// BenchmarkSchedule: one scheduling decision under the default policy
// over 1,000 and 10,000 connected agents, in memory: "scan" builds every
// agent's candidate and runs scheduler.Pick (what every decision did
// before issue 15, and what an APP script still does); "index" is
// pickDefault (scheduler.PickRanked over the index). With 8 invocations
// in flight on the agents the policy prefers, so that a decision reads
// past them. p50-ns is the median decision. Run with
//
//	go test -run '^$' -bench BenchmarkSchedule -benchmem ./controller/fleet/
func BenchmarkSchedule(b *testing.B) {
	fn := scheduler.Function{Digest: "sha256:aa", CapacityKiB: 1024}
	for _, n := range []int{1000, 10000} {
		f := schedFleet(n)
		for _, e := range f.index.entries()[:8] {
			e.s.inflight.Add(1)
		}
		decide := map[string]func() *Session{
			"scan": func() *Session {
				buf := candidateBufs.Get().(*candidateBuf)
				defer candidateBufs.Put(buf)
				f.candidates(fn.Digest, nil, buf)
				i, err := scheduler.Pick(buf.cs, fn, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				return buf.ss[i]
			},
			"index": func() *Session {
				s, _, err := f.pickDefault(fn, nil)
				if err != nil {
					b.Fatal(err)
				}
				return s
			},
		}
		if a, c := decide["scan"](), decide["index"](); a != c {
			b.Fatalf("scan chose %s, index %s", a.Name(), c.Name())
		}
		for _, how := range []string{"scan", "index"} {
			b.Run(fmt.Sprintf("agents=%d/%s", n, how), func(b *testing.B) {
				lat := make([]time.Duration, 0, 1<<16)
				b.ReportAllocs()
				for b.Loop() {
					t0 := time.Now()
					decide[how]()
					if len(lat) < cap(lat) {
						lat = append(lat, time.Since(t0))
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			})
		}
	}
}

// BenchmarkDigestSet: the memory of one agent's set of 100 digests, as
// admit builds it from the agent's hello (each hello decodes its own copy
// of every digest's text), against a map keyed by those strings (before
// issue 15). Run with
//
//	go test -run '^$' -bench DigestSet ./controller/fleet/
func BenchmarkDigestSet(b *testing.B) {
	digests := make([]string, 100)
	for i := range digests {
		digests[i] = fmt.Sprintf("sha256:%064x", i)
	}
	hello := func() []string { // the digests as a fresh hello decodes them
		out := make([]string, len(digests))
		for i, d := range digests {
			out[i] = string([]byte(d))
		}
		return out
	}
	newDigestSet(digests...) // the fleet already knows these digests
	perSet := func(b *testing.B, build func([]string) any) {
		const sets = 1000
		keep := make([]any, sets)
		hellos := make([][]string, sets)
		var before, after runtime.MemStats
		for b.Loop() {
			clear(keep)
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range hellos {
				hellos[i] = hello()
			}
			for i := range keep {
				keep[i] = build(hellos[i])
			}
			clear(hellos) // the hello frames are gone once admitted
			runtime.GC()
			runtime.ReadMemStats(&after)
		}
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/sets, "B/agent")
		runtime.KeepAlive(keep)
	}
	b.Run("strings", func(b *testing.B) {
		perSet(b, func(ds []string) any {
			m := make(map[string]struct{}, len(ds))
			for _, d := range ds {
				m[d] = struct{}{}
			}
			return m
		})
	})
	b.Run("interned", func(b *testing.B) {
		perSet(b, func(ds []string) any { return newDigestSet(ds...) })
	})
}
