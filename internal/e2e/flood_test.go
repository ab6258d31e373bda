package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFloodLeavesOthersLatency: a sustained flood of calls of a looping
// function through the REST API (many concurrent clients, each calling
// again as soon as its call ends; the agent stops each guest after a short
// timeout) does not starve another function on the same agent: its calls
// never wait for an instance slot and its median latency stays within 1.5×
// its idle median. Idle and flooded phases alternate, so both see the same
// machine (these VMs are shared and their speed drifts). Without fair slots
// the looping calls took every instance slot and hello waited seconds, then
// timed out.
//
// The p99 target (within 2× of idle) is measured and logged, not
// asserted: on the 2-core VM the looping function is allowed one of the two
// cores, and that alone (measured with a plain CPU hog in another process)
// and the agent's garbage collector, which then has one core left, put the
// p99 ratio at 2.3–4.3 (docs/decisions.md, Fair instance slots).
//
// It measures time, so it skips under -race and runs in the Makefile's
// non-race line.
func TestFloodLeavesOthersLatency(t *testing.T) {
	if raceEnabled {
		t.Skip("timing test: the race detector slows the test's own client; run without -race (make test does)")
	}
	const (
		flooders   = 40                     // concurrent clients calling the looping function
		guestLimit = 250 * time.Millisecond // the agent stops each looping guest after this
		rounds     = 3                      // idle then flooded phases
		phaseTime  = 2 * time.Second        // of hello calls, one after the other
	)
	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	agent := startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir(), "--timeout", guestLimit.String())
	metricsAddr := agent.Await(`msg=metrics addr=(\S+)`)
	c.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	c.upload(t, "_", "spin", "loop", map[string]string{"wait_for_workers": "true"})
	gauge := func(name string) int {
		n, _ := strconv.Atoi(metric(t, metricsAddr, name))
		return n
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	post := func(ctx context.Context, cl *http.Client, fn string) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", c.url+"/v1/fn/_/"+fn, bytes.NewReader([]byte(`{"args":{"name":"Ada"}}`)))
		req.Header.Set("Authorization", "Bearer "+c.admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := cl.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	hello := func() time.Duration {
		t0 := time.Now()
		status, body, err := post(context.Background(), client, "hello")
		d := time.Since(t0)
		if err != nil || status != 200 || !bytes.Contains(body, []byte("Hello Ada!")) {
			t.Fatalf("hello: %d %s %v", status, body, err)
		}
		return d
	}
	phase := func(into *[]time.Duration) {
		for end := time.Now().Add(phaseTime); time.Now().Before(end); {
			*into = append(*into, hello())
		}
	}
	var statuses [600]atomic.Int64
	floodClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: flooders}}
	flood := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range flooders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					status, _, err := post(ctx, floodClient, "spin")
					if err == nil && status < len(statuses) {
						statuses[status].Add(1)
					}
				}
			}()
		}
		return func() { cancel(); wg.Wait() }
	}

	for range 50 { // warm: connections, caches, the agent's compiled code
		hello()
	}
	var idle, flooded []time.Duration
	for range rounds {
		phase(&idle)
		stop := flood()
		waitFor(t, "looping calls queued on the agent", func() bool { return gauge("wisp_agent_queued") >= flooders/2 })
		phase(&flooded)
		stop()
		// The abandoned calls end at their timeout; then the agent is idle.
		waitFor(t, "the agent idle again", func() bool { return gauge("wisp_agent_slots_busy")+gauge("wisp_agent_queued") == 0 })
	}

	ran := statuses[500].Load() // stopped after guestLimit, or timed out in the queue
	if ran == 0 || statuses[200].Load() != 0 {
		t.Fatalf("the flood did not loop: statuses 200:%d 500:%d 503:%d", statuses[200].Load(), ran, statuses[503].Load())
	}
	if n := gauge(`wisp_agent_queue_waits_total{reason="agent_full"}`); n != 0 {
		t.Fatalf("%d calls waited because every instance slot was busy (so hello could wait behind the flood)", n)
	}
	if gauge(`wisp_agent_queue_waits_total{reason="function_limit"}`) == 0 {
		t.Fatal("no looping call waited for the per-function cap: the flood never filled it")
	}
	p50, p99 := float64(pct(flooded, .5))/float64(pct(idle, .5)), float64(pct(flooded, .99))/float64(pct(idle, .99))
	t.Logf("hello flooded/idle: p50 %v/%v = %.2f, p90 %v/%v, p99 %v/%v = %.2f (%d and %d calls; %d looping calls answered 500, %d refused 503)",
		pct(flooded, .5), pct(idle, .5), p50, pct(flooded, .9), pct(idle, .9), pct(flooded, .99), pct(idle, .99), p99,
		len(flooded), len(idle), ran, statuses[503].Load())
	if p50 > 1.5 {
		t.Fatalf("hello's median under the flood is %.2f× its idle median, over 1.5×", p50)
	}
}
