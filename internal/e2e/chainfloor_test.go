package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/valyala/fasthttp"
)

// The chained floor (issue 16, point 1) is the least a service laid out
// like Wisp can cost here: a client process sends an HTTP request to a
// server process, which forwards the body on a new QUIC stream of one
// long-lived connection to an echo process and answers with what comes
// back. Same stacks as Wisp's hops (fasthttp, quic-go, TLS 1.3), no store,
// no scheduling, no wasm. Every e2e invoke figure is quoted as a ratio to
// it, measured in the same run.

// chainHTTPEnv, set to the echo process's address, makes the test binary
// the chained floor's HTTP hop (TestMain).
const chainHTTPEnv = "WISP_E2E_CHAIN_HTTP"

// runChainHTTPServer is the chained floor's middle process: it prints its
// HTTP address and serves until stdin closes.
func runChainHTTPServer(echoAddr string) {
	conn, err := quic.DialAddr(context.Background(), echoAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"echo"}}, &quic.Config{MaxIncomingStreams: 1 << 16})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		s, err := conn.OpenStreamSync(c)
		if err != nil {
			c.Error(err.Error(), 502)
			return
		}
		s.Write(c.PostBody())
		s.Close()
		out, err := io.ReadAll(s)
		if err != nil {
			c.Error(err.Error(), 502)
			return
		}
		c.SetContentType("application/json")
		c.SetBody(out)
	}}
	go srv.Serve(ln)
	fmt.Println(ln.Addr().String())
	io.Copy(io.Discard, os.Stdin)
}

// traceFloor starts an execution trace of a floor's process when
// WISP_BENCH_TRACE_DIR is set (benchPlatform traces the controller and the
// agent there), in <dir>/<role>-<pid>.trace, and returns the function that
// writes it.
func traceFloor(role string) (stop func()) {
	dir := os.Getenv("WISP_BENCH_TRACE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.trace", role, os.Getpid())))
	if err != nil {
		panic(err)
	}
	if err := trace.Start(f); err != nil {
		panic(err)
	}
	return func() { trace.Stop(); f.Close() }
}

// chainFloor is a running chained floor: its URL and its two server
// processes (for their CPU).
type chainFloor struct {
	url        string
	pids       [2]int
	httpClient *http.Client
}

// startChainFloor starts the echo and HTTP processes (this test binary
// again) and returns the floor.
func startChainFloor(b *testing.B, clients int) *chainFloor {
	echo, echoAddr := spawnSelf(b, "WISP_E2E_QUIC_ECHO=1")
	hop, httpAddr := spawnSelf(b, chainHTTPEnv+"="+echoAddr)
	return &chainFloor{url: "http://" + httpAddr + "/", pids: [2]int{echo.Process.Pid, hop.Process.Pid},
		httpClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}}
}

// spawnSelf starts this test binary again with env added (TestMain picks
// its role), stops it when b ends, and returns it with the address it
// prints first.
func spawnSelf(b *testing.B, env string) (*exec.Cmd, string) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return cmd, strings.TrimSpace(line)
}

var chainBody = []byte(`{"args":{"name":"Ada"}}`)

// call makes one request through the floor and returns its duration.
func (f *chainFloor) call(b *testing.B) time.Duration {
	t0 := time.Now()
	resp, err := f.httpClient.Post(f.url, "application/json", bytes.NewReader(chainBody))
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != 200 || !bytes.Equal(out, chainBody) {
		b.Fatalf("chained floor: %d %q", resp.StatusCode, out)
	}
	return d
}

func (f *chainFloor) cpu() time.Duration { return procCPU(f.pids[0]) + procCPU(f.pids[1]) }

// throughput runs n requests from clients concurrent clients and returns
// requests/s and the servers' CPU per request.
func (f *chainFloor) throughput(b *testing.B, n, clients int) (perSec float64, cpuPer time.Duration) {
	return loadRun(b, n, clients, f.cpu, func() error { return postOK(f.httpClient, f.url, "", chainBody) })
}

// postOK posts a JSON body (with a bearer token unless token is empty),
// reads the answer and fails unless it is 200.
func postOK(client *http.Client, url, token string, body []byte) error {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// loadRun makes n calls of do from clients goroutines and returns calls/s
// and the CPU cpu() counted per call; a failed call fails b.
func loadRun(b *testing.B, n, clients int, cpu func() time.Duration, do func() error) (float64, time.Duration) {
	var failed atomic.Int64
	var firstErr atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpu()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := do(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	used := cpu() - cpu0
	if k := failed.Load(); k > 0 {
		b.Fatalf("%d of %d calls failed, first: %v", k, n, firstErr.Load())
	}
	return float64(n) / elapsed.Seconds(), used / time.Duration(n)
}

// BenchmarkChainedFloor: the chained floor alone, latency with one client
// and throughput with 64, with the CPU its two server processes spend per
// request.
func BenchmarkChainedFloor(b *testing.B) {
	const clients = 64
	f := startChainFloor(b, clients)
	for range 200 {
		f.call(b)
	}
	var lat []time.Duration
	for b.Loop() {
		lat = append(lat, f.call(b))
	}
	perSec, cpuPer := f.throughput(b, max(b.N, 2000), clients)
	b.ReportMetric(float64(pct(lat, .5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(lat, .99).Microseconds()), "p99-µs")
	b.ReportMetric(perSec, "req/s-64-clients")
	b.ReportMetric(float64(cpuPer.Microseconds()), "server-cpu-µs/req")
}
