package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testpg"
)

// BenchmarkClusterInvoke: warm invoke latency (p50, one client) and
// throughput (64 clients) through one controller of a three-controller
// cluster on Postgres, beside a single controller on Postgres in the same
// run (issue 15: within 10 %). Each platform has one agent (the cluster's
// linked to all three controllers) and the C hello function; the two run
// side by side and are measured in alternating rounds, so that both see
// the same machine.
func BenchmarkClusterInvoke(b *testing.B) {
	const clients, rounds = 64, 4
	dsn := testpg.Schema(b, 0)
	single := startController(b, b.TempDir(), dsn, "127.0.0.1:0", keepActivations...)
	startAgent(b, single, single.joinToken(b, dsn), "single", b.TempDir())
	cl := startCluster(b, 3, keepActivations...)
	startClusterAgent(b, cl.joinToken(b, 3), "clustered", cl.quicAddrs())
	for _, c := range []*controller{single, cl.ctls[0]} {
		c.upload(b, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
		if status, body := c.invoke(b, "_", "hello", `{"args":{"name":"warm"}}`); status != 200 {
			b.Fatalf("warm-up through %s: %d %s", c.url, status, body)
		}
	}
	body := []byte(`{"args":{"name":"Ada"}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	call := func(c *controller) (time.Duration, error) {
		req, _ := http.NewRequest("POST", c.url+"/v1/fn/_/hello", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.admin)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(out, []byte("Hello Ada!")) {
			return 0, fmt.Errorf("%d %s", resp.StatusCode, out)
		}
		return time.Since(t0), nil
	}
	through := cl.ctls[0]
	n := max(b.N, 500)
	var latSingle, latCluster []time.Duration
	var tpSingle, tpCluster float64
	nocpu := func() time.Duration { return 0 }
	b.ResetTimer()
	for range rounds {
		for _, p := range []struct {
			c   *controller
			lat *[]time.Duration
			tp  *float64
		}{{single, &latSingle, &tpSingle}, {through, &latCluster, &tpCluster}} {
			for range n / rounds {
				d, err := call(p.c)
				if err != nil {
					b.Fatal(err)
				}
				*p.lat = append(*p.lat, d)
			}
			perSec, _ := loadRun(b, 4*n/rounds, clients, nocpu, func() error { _, err := call(p.c); return err })
			*p.tp += perSec / rounds
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(pct(latSingle, .5).Microseconds()), "single-p50-µs")
	b.ReportMetric(float64(pct(latCluster, .5).Microseconds()), "cluster-p50-µs")
	b.ReportMetric(float64(pct(latCluster, .5))/float64(pct(latSingle, .5)), "x-p50-cluster-vs-single")
	b.ReportMetric(tpSingle, "single-inv/s")
	b.ReportMetric(tpCluster, "cluster-inv/s")
	b.ReportMetric(tpCluster/tpSingle, "x-throughput-cluster-vs-single")
}
