package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// procCPU returns the user+system CPU time a process has used.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// procTreeCPU is procCPU plus the CPU of the children the process has
// waited for (compile workers).
func procTreeCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100)
}

func procRSS(pid int) int64 { return procStatus(pid, "VmRSS") }

// procPeakRSS is the most resident memory a process has had (VmHWM).
func procPeakRSS(pid int) int64 { return procStatus(pid, "VmHWM") }

// procStatus reads one kB field of /proc/pid/status, in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// benchPlatform starts a controller and one agent as processes, with the
// C hello function uploaded and warm.
//
// With WISP_BENCH_PROFILE_DIR set, both processes write CPU profiles there
// (controller.prof, agent.prof; internal/profiling), stopped gracefully
// when the benchmark ends so the files are complete. With
// WISP_BENCH_TRACE_DIR set, they write execution traces there
// (controller.trace, agent.trace) the same way.
func benchPlatform(b *testing.B) (*controller, *proc) { return benchPlatformOn(b, "") }

// benchPlatformOn is benchPlatform on the Postgres at dsn ("": the
// embedded store).
func benchPlatformOn(b *testing.B, dsn string) (*controller, *proc) {
	return benchPlatformIn(b, b.TempDir(), dsn, "")
}

// benchPlatformIn is benchPlatformOn with the controller's data directory
// given, and suffix added to the profiles' names.
func benchPlatformIn(b *testing.B, dataDir, dsn, suffix string) (*controller, *proc) {
	var cenv, aenv []string
	profDir := os.Getenv("WISP_BENCH_PROFILE_DIR")
	if profDir != "" {
		cenv = []string{"WISP_CPU_PROFILE=" + filepath.Join(profDir, "controller"+suffix+".prof")}
		aenv = []string{"WISP_CPU_PROFILE=" + filepath.Join(profDir, "agent"+suffix+".prof")}
	}
	traceDir := os.Getenv("WISP_BENCH_TRACE_DIR")
	if traceDir != "" {
		cenv = append(cenv, "WISP_EXEC_TRACE="+filepath.Join(traceDir, "controller"+suffix+".trace"))
		aenv = append(aenv, "WISP_EXEC_TRACE="+filepath.Join(traceDir, "agent"+suffix+".trace"))
	}
	c := startControllerEnv(b, dataDir, dsn, "127.0.0.1:0", cenv)
	agent := startAgentEnv(b, c, c.joinToken(b, dsn), "edge1", b.TempDir(), aenv)
	if profDir != "" || traceDir != "" {
		b.Cleanup(func() { agent.Stop(); c.Stop() })
	}
	c.upload(b, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	if status, body := c.invoke(b, "_", "hello", `{"args":{"name":"warm"}}`); status != 200 {
		b.Fatalf("warm-up: %d %s", status, body)
	}
	return c, agent
}

// BenchmarkInvokeLatency: warm invoke of the C hello function through REST →
// controller → QUIC → agent and back, beside three floors measured in the
// same run: a loopback HTTP round trip to the same server (GET /v1/), a
// loopback QUIC stream round trip (quic-go echo), and the in-process runtime
// call. With WISP_E2E_BASELINE_BIN naming a directory of other
// wisp-controller and wisp-agent binaries, a second platform runs on them
// and every iteration invokes both, so the ratios current ÷ baseline come
// from the same run.
func BenchmarkInvokeLatency(b *testing.B) {
	c, _ := benchPlatform(b)
	var base *controller
	if dir := os.Getenv("WISP_E2E_BASELINE_BIN"); dir != "" {
		current := bin
		bin = dir
		base, _ = benchPlatform(b)
		bin = current
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	body := []byte(`{"args":{"name":"Ada"}}`)
	invoke := func(c *controller) time.Duration {
		req, _ := http.NewRequest("POST", c.url+"/v1/fn/_/hello", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.admin)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 || !bytes.Contains(out, []byte("Hello Ada!")) {
			b.Fatalf("%d %s", resp.StatusCode, out)
		}
		return d
	}
	httpRTT := func() time.Duration {
		t0 := time.Now()
		resp, err := client.Get(c.url + "/v1/")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0)
	}
	quicRTT := quicEcho(b)
	quicXRTT := quicEchoProcess(b)
	rtCall := runtimeCall(b)
	chain := startChainFloor(b, 1)
	for range 100 {
		chain.call(b)
	}

	var lr, lh, lq, lqx, lrt, lc, lb []time.Duration
	for i := 0; b.Loop(); i++ {
		if base == nil {
			lr = append(lr, invoke(c))
		} else if i%2 == 0 { // alternating which goes first
			lr, lb = append(lr, invoke(c)), append(lb, invoke(base))
		} else {
			lb, lr = append(lb, invoke(base)), append(lr, invoke(c))
		}
		lh = append(lh, httpRTT())
		lq = append(lq, quicRTT())
		lqx = append(lqx, quicXRTT())
		lrt = append(lrt, rtCall())
		lc = append(lc, chain.call(b))
	}
	// The invocation crosses processes twice (client -> controller ->
	// agent), so its QUIC floor is a stream round trip to another process,
	// like the HTTP floor; the in-process figure is reported beside it.
	floor := pct(lh, .5) + pct(lqx, .5) + pct(lrt, .5)
	b.ReportMetric(float64(pct(lqx, .5).Microseconds()), "quic-rtt-xproc-p50-µs")
	b.ReportMetric(float64(pct(lr, .5).Microseconds()), "invoke-p50-µs")
	b.ReportMetric(float64(pct(lr, .99).Microseconds()), "invoke-p99-µs")
	b.ReportMetric(float64(pct(lh, .5).Microseconds()), "http-rtt-p50-µs")
	b.ReportMetric(float64(pct(lq, .5).Microseconds()), "quic-rtt-p50-µs")
	b.ReportMetric(float64(pct(lrt, .5).Microseconds()), "runtime-p50-µs")
	b.ReportMetric(float64(pct(lr, .5))/float64(floor), "x-floor-sum")
	b.ReportMetric(float64(pct(lc, .5).Microseconds()), "chained-floor-p50-µs")
	b.ReportMetric(float64(pct(lr, .5))/float64(pct(lc, .5)), "x-chained-floor")
	b.ReportMetric(float64(pct(lr, .99))/float64(pct(lr, .5)), "p99-over-p50")
	// The chained floor runs no function: the same ratio with the
	// in-process runtime call added to the floor.
	b.ReportMetric(float64(pct(lr, .5))/float64(pct(lc, .5)+pct(lrt, .5)), "x-chained-floor-plus-runtime")
	// The floor's own tail on this machine, beside the invocation's.
	b.ReportMetric(float64(pct(lc, .99))/float64(pct(lc, .5)), "chained-floor-p99-over-p50")
	b.ReportMetric(float64(pct(lr, .5))/float64(pct(lh, .5)+pct(lq, .5)+pct(lrt, .5)), "x-floor-sum-inproc-quic")
	if base != nil {
		b.ReportMetric(float64(pct(lb, .5).Microseconds()), "baseline-invoke-p50-µs")
		b.ReportMetric(float64(pct(lb, .5))/float64(pct(lc, .5)), "baseline-x-chained-floor")
		b.ReportMetric(float64(pct(lb, .99))/float64(pct(lb, .5)), "baseline-p99-over-p50")
		b.ReportMetric(float64(pct(lr, .5))/float64(pct(lb, .5)), "p50-x-baseline")
		b.ReportMetric(float64(pct(lr, .99))/float64(pct(lb, .99)), "p99-x-baseline")
	}
}

// quicEcho starts an in-process quic-go echo server and returns a function
// timing one stream round trip with a small frame.
func quicEcho(b *testing.B) func() time.Duration {
	id, err := fleet.LoadOrCreateIdentity(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ln := serveQUICEcho(id)
	b.Cleanup(func() { ln.Close() })
	return echoRoundTrip(b, ln.Addr().String())
}

// serveQUICEcho serves a quic-go echo on a loopback port: every stream gets
// back what it sent.
func serveQUICEcho(id fleet.Identity) *quic.Listener {
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{"echo"}}, nil)
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() { io.Copy(s, s); s.Close() }()
				}
			}()
		}
	}()
	return ln
}

// echoRoundTrip dials an echo server and returns a function timing one
// stream round trip of 128 bytes.
func echoRoundTrip(b *testing.B, addr string) func() time.Duration {
	conn, err := quic.DialAddr(context.Background(), addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"echo"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.CloseWithError(0, "") })
	msg, buf := make([]byte, 128), make([]byte, 128)
	return func() time.Duration {
		t0 := time.Now()
		s, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		s.Write(msg)
		s.Close()
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
}

func runtimeCall(b *testing.B) func() time.Duration {
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "hello_c.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	rt, err := runtime.New(context.Background(), runtime.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(context.Background()) })
	info, err := rt.Load(context.Background(), code)
	if err != nil {
		b.Fatal(err)
	}
	return func() time.Duration {
		t0 := time.Now()
		if _, err := rt.Invoke(context.Background(), info.Digest, runtime.Request{Input: []byte(`{"name":"Ada"}`)}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
}

// BenchmarkInvokeThroughput: 64 concurrent REST clients invoking the C hello
// function; reports invocations/s and the CPU the controller and the agent
// processes spent per invocation, together and each. With
// WISP_E2E_BASELINE_BIN naming a directory of other wisp-controller and
// wisp-agent binaries, the same load runs on them too, in rounds
// alternating with the current ones in the same run, and the ratios
// current ÷ baseline are reported.
func BenchmarkInvokeThroughput(b *testing.B) {
	const clients = 64
	body := []byte(`{"args":{"name":"Ada"}}`)
	// The chained floor runs first, in the same run and with as many
	// calls, so each figure has its same-run baseline.
	chain := startChainFloor(b, clients)
	chainPerSec, chainCPU := chain.throughput(b, max(b.N, 2000), clients)
	type platform struct {
		c          *controller
		agent      *proc
		client     *http.Client
		elapsed    time.Duration
		ccpu, acpu time.Duration // the controller's and the agent's
		n          int
	}
	start := func() *platform {
		c, agent := benchPlatform(b)
		return &platform{c: c, agent: agent,
			client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}}
	}
	run := func(p *platform, n int) {
		if n == 0 {
			return
		}
		c0, a0 := procCPU(p.c.Cmd.Process.Pid), procCPU(p.agent.Cmd.Process.Pid)
		perSec, _ := loadRun(b, n, clients, func() time.Duration { return 0 }, func() error {
			return postOK(p.client, p.c.url+"/v1/fn/_/hello", p.c.admin, body)
		})
		p.elapsed += time.Duration(float64(n) / perSec * float64(time.Second))
		p.ccpu += procCPU(p.c.Cmd.Process.Pid) - c0
		p.acpu += procCPU(p.agent.Cmd.Process.Pid) - a0
		p.n += n
	}
	cur := start()
	var base *platform
	if dir := os.Getenv("WISP_E2E_BASELINE_BIN"); dir != "" {
		current := bin
		bin = dir
		base = start()
		bin = current
	}
	b.ResetTimer()
	if base == nil {
		run(cur, b.N)
	} else {
		// Rounds alternate which one goes first, so that neither gains
		// from the machine's load drifting.
		const rounds = 8
		for i := range rounds {
			n := b.N/rounds + min(1, max(0, b.N%rounds-i))
			first, second := cur, base
			if i%2 == 1 {
				first, second = base, cur
			}
			run(first, n)
			run(second, n)
		}
	}
	b.StopTimer()
	if cur.n == 0 || base != nil && base.n == 0 {
		return
	}
	perInv := func(p *platform, d time.Duration) float64 { return float64(d.Microseconds()) / float64(p.n) }
	perSec := float64(cur.n) / cur.elapsed.Seconds()
	cpuPer := perInv(cur, cur.ccpu+cur.acpu)
	b.ReportMetric(perSec, "invocations/s")
	b.ReportMetric(cpuPer, "server-cpu-µs/inv")
	b.ReportMetric(perInv(cur, cur.ccpu), "controller-cpu-µs/inv")
	b.ReportMetric(perInv(cur, cur.acpu), "agent-cpu-µs/inv")
	b.ReportMetric(float64(procPeakRSS(cur.agent.Cmd.Process.Pid))/(1<<20), "agent-peak-rss-MiB")
	b.ReportMetric(chainPerSec, "chained-floor-req/s")
	b.ReportMetric(float64(chainCPU.Microseconds()), "chained-floor-cpu-µs/req")
	b.ReportMetric(perSec/chainPerSec, "x-chained-floor")
	if base != nil {
		basePerSec := float64(base.n) / base.elapsed.Seconds()
		b.ReportMetric(perInv(base, base.ccpu+base.acpu), "baseline-server-cpu-µs/inv")
		b.ReportMetric(perSec/basePerSec, "throughput-x-baseline")
		b.ReportMetric(cpuPer/perInv(base, base.ccpu+base.acpu), "cpu-x-baseline")
		b.ReportMetric(perInv(cur, cur.ccpu)/perInv(base, base.ccpu), "controller-cpu-x-baseline")
		b.ReportMetric(perInv(cur, cur.acpu)/perInv(base, base.acpu), "agent-cpu-x-baseline")
		b.ReportMetric(float64(procPeakRSS(base.agent.Cmd.Process.Pid))/(1<<20), "baseline-agent-peak-rss-MiB")
	}
}

// BenchmarkInvokeThroughputStores: BenchmarkInvokeThroughput's load on the
// embedded store and on Postgres, one after the other in the same run
// (issue 16, point 5: Postgres ≥ 0.9× the embedded store).
func BenchmarkInvokeThroughputStores(b *testing.B) {
	const clients = 64
	body := []byte(`{"args":{"name":"Ada"}}`)
	run := func(dsn string) (float64, time.Duration) {
		c, agent := benchPlatformOn(b, dsn)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
		cpu := func() time.Duration { return procCPU(c.Cmd.Process.Pid) + procCPU(agent.Cmd.Process.Pid) }
		return loadRun(b, max(b.N, 2000), clients, cpu, func() error { return postOK(client, c.url+"/v1/fn/_/hello", c.admin, body) })
	}
	embedded, ecpu := run("")
	pg, pcpu := run(testpg.Schema(b, 0))
	b.ReportMetric(embedded, "embedded-inv/s")
	b.ReportMetric(pg, "postgres-inv/s")
	b.ReportMetric(float64(ecpu.Microseconds()), "embedded-cpu-µs/inv")
	b.ReportMetric(float64(pcpu.Microseconds()), "postgres-cpu-µs/inv")
	b.ReportMetric(pg/embedded, "x-postgres-vs-embedded")
}

// BenchmarkFirstInvocation: a new 100 KiB function, pushed to the agent
// and compiled there on create (wait_for_workers=true), then invoked; and the
// same without the push, where the first invocation pulls and compiles.
//
// It runs on two platforms side by side, one with 60 functions already
// deployed and one with 6,000 (WISP_BENCH_DEPLOYED="60,6000" changes
// them), taking turns each iteration, and deletes what an iteration
// created, so every create meets the same number of functions (the
// order flips every iteration). The figures without a suffix are the first platform's; "-at-<n>" are
// another's, and x-create+push-<n>-vs-<first> their ratio: what a
// desired-set change costs as deployments grow (issue 16, point 7). With
// WISP_E2E_BASELINE_BIN naming a directory of other wisp-controller and
// wisp-agent binaries, the same platforms run on them after the loop
// (the first ones stopped: a baseline whose every change costs CPU in the
// background would slow both), as many iterations, with "baseline-"
// figures.
func BenchmarkFirstInvocation(b *testing.B) {
	counts := []int{60, 6000}
	if v := os.Getenv("WISP_BENCH_DEPLOYED"); v != "" {
		counts = counts[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				b.Fatalf("WISP_BENCH_DEPLOYED=%q: want counts such as 60,6000", v)
			}
			counts = append(counts, n)
		}
	}
	wat, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "hello_wat.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	type platform struct {
		n                              int
		c                              *controller
		agent                          *proc
		pushed, firstAfterPush, pulled []time.Duration
	}
	start := func(dir string) []*platform {
		defer func(old string) { bin = old }(bin)
		bin = dir
		var plats []*platform
		for _, n := range counts {
			c, agent := benchPlatformDeployed(b, n, wat)
			plats = append(plats, &platform{n: n, c: c, agent: agent})
		}
		return plats
	}
	// The platforms take turns in an order that flips every iteration:
	// the one that goes second meets the first one's background work
	// (its deletes' syncs) on this machine's two cores.
	iteration := func(plats []*platform, i int) {
		order := slices.Clone(plats)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			for _, wait := range []string{"true", "false"} {
				name := fmt.Sprintf("f%d_%s", i, wait)
				code := padModule(wat, 100<<10, name)
				t0 := time.Now()
				uploadBytes(b, p.c, name, code, wait)
				up := time.Since(t0)
				t1 := time.Now()
				if status, body := p.c.invoke(b, "_", name, `{}`); status != 200 {
					b.Fatalf("%d %s", status, body)
				}
				first := time.Since(t1)
				if wait == "true" {
					p.pushed, p.firstAfterPush = append(p.pushed, up), append(p.firstAfterPush, first)
				} else {
					p.pulled = append(p.pulled, first)
				}
			}
			for _, wait := range []string{"true", "false"} {
				if status, body := p.c.do(b, "DELETE", fmt.Sprintf("/v1/fn/_/f%d_%s", i, wait), nil, ""); status != 204 {
					b.Fatalf("delete: %d %s", status, body)
				}
			}
		}
	}
	report := func(plats []*platform, prefix string) {
		for _, p := range plats[1:] {
			b.ReportMetric(float64(pct(p.pushed, .5))/float64(pct(plats[0].pushed, .5)), fmt.Sprintf("%sx-create+push-%d-vs-%d", prefix, p.n, plats[0].n))
		}
		for j, p := range plats {
			suffix := ""
			if j > 0 {
				suffix = fmt.Sprintf("-at-%d", p.n)
			}
			b.ReportMetric(float64(pct(p.pushed, .5).Microseconds()), prefix+"create+push-p50-µs"+suffix)
			b.ReportMetric(float64(pct(p.firstAfterPush, .5).Microseconds()), prefix+"first-after-push-p50-µs"+suffix)
			b.ReportMetric(float64(pct(p.pulled, .5).Microseconds()), prefix+"first-with-pull-p50-µs"+suffix)
		}
	}
	plats := start(bin)
	i := 0
	for b.Loop() {
		i++
		iteration(plats, i)
	}
	report(plats, "")
	if base := os.Getenv("WISP_E2E_BASELINE_BIN"); base != "" {
		for _, p := range plats {
			p.agent.Stop()
			p.c.Stop()
		}
		plats = start(base)
		for j := range i {
			iteration(plats, j+1)
		}
		report(plats, "baseline-")
	}
}

// benchPlatformDeployed is benchPlatform on the embedded store with n
// functions (named pre00000…, sharing code) written into it before the
// controller starts: filling it through the API would take minutes at
// 6,000. The controller is started once to make its data directory,
// stopped, filled and started again. With WISP_BENCH_PROFILE_DIR set,
// the processes write controller-<n>.prof and agent-<n>.prof there.
func benchPlatformDeployed(b *testing.B, n int, code []byte) (*controller, *proc) {
	dir := b.TempDir()
	startControllerEnv(b, dir, "", "127.0.0.1:0", nil).Stop()
	st, err := store.OpenEmbedded(filepath.Join(dir, "controller.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(code)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	for i := range n {
		fn := store.Function{Module: store.DefaultModule, Name: fmt.Sprintf("pre%05d", i), Digest: digest, ABI: string(runtime.ABIFunLess)}
		if _, err := st.CreateFunction(context.Background(), fn, code); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	return benchPlatformIn(b, dir, "", fmt.Sprintf("-%d", n))
}

// BenchmarkUpload: creating a function from hello_c, hello_rust and
// hello_go (each upload made unique, so nothing is cached anywhere) and its
// first call, on the embedded store with one agent: upload alone
// (wait_for_workers=false) and the first call right after it, which waits
// for the agent's cold compile; and create with the push awaited
// (wait_for_workers=true) and the first call after that. Beside the wall
// times it reports the CPU the controller spent on an upload and the CPU
// the agent and its compile workers spent from the upload to the end of
// the cold first call, which a
// loaded machine changes much less than the wall time. With
// WISP_E2E_BASELINE_BIN naming a directory of other wisp-controller and
// wisp-agent binaries, the same is measured on them in the same run.
func BenchmarkUpload(b *testing.B) {
	bins := []struct{ name, dir string }{{"current", bin}}
	if base := os.Getenv("WISP_E2E_BASELINE_BIN"); base != "" {
		bins = append(bins, struct{ name, dir string }{"baseline", base})
	}
	for _, fx := range []string{"hello_c", "hello_rust", "hello_go"} {
		code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", fx+".wasm"))
		if err != nil {
			b.Fatal(err)
		}
		for _, bb := range bins {
			b.Run(fx+"/"+bb.name, func(b *testing.B) {
				defer func(old string) { bin = old }(bin)
				bin = bb.dir
				c, agent := benchPlatform(b)
				var up, cold, pushed, warm, upCPU, coldCPU []time.Duration
				i := 0
				for b.Loop() {
					i++
					for _, wait := range []string{"false", "true"} {
						name := fmt.Sprintf("u%d_%s", i, wait)
						mod := padModule(code, len(code)+64, name)
						c0, a0 := procTreeCPU(c.Cmd.Process.Pid), procTreeCPU(agent.Cmd.Process.Pid)
						t0 := time.Now()
						uploadBytes(b, c, name, mod, wait)
						t1 := time.Now()
						c1 := procTreeCPU(c.Cmd.Process.Pid)
						if status, out := c.invoke(b, "_", name, `{"args":{"name":"Ada"}}`); status != 200 {
							b.Fatalf("%s: %d %s", name, status, out)
						}
						t2 := time.Now()
						a2 := procTreeCPU(agent.Cmd.Process.Pid)
						if wait == "false" {
							up, cold = append(up, t1.Sub(t0)), append(cold, t2.Sub(t1))
							upCPU, coldCPU = append(upCPU, c1-c0), append(coldCPU, a2-a0)
						} else {
							pushed, warm = append(pushed, t1.Sub(t0)), append(warm, t2.Sub(t1))
						}
					}
				}
				b.ReportMetric(float64(pct(up, .5).Microseconds()), "upload-p50-µs")
				b.ReportMetric(float64(pct(cold, .5).Microseconds()), "cold-first-call-p50-µs")
				b.ReportMetric(float64(pct(pushed, .5).Microseconds()), "create+push-p50-µs")
				b.ReportMetric(float64(pct(warm, .5).Microseconds()), "first-after-push-p50-µs")
				b.ReportMetric(float64(pct(upCPU, .5).Milliseconds()), "upload-cpu-p50-ms")
				b.ReportMetric(float64(pct(coldCPU, .5).Milliseconds()), "cold-call-cpu-p50-ms")
			})
		}
	}
}

// padModule appends a custom section so the module is size bytes and unique.
func padModule(wasm []byte, size int, name string) []byte {
	out := slices.Clone(wasm)
	pad := size - len(wasm) - len(name) - 12
	payload := append([]byte{byte(len(name))}, name...)
	payload = append(payload, make([]byte, pad)...)
	out = append(out, 0)
	n := uint32(len(payload))
	for { // LEB128 section size
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			out = append(out, c|0x80)
			continue
		}
		out = append(out, c)
		break
	}
	return append(out, payload...)
}

func uploadBytes(b *testing.B, c *controller, name string, code []byte, wait string) {
	body, ct := testhttp.Multipart(map[string]string{"name": name, "wait_for_workers": wait}, "code", name+".wasm", code)
	if status, out := c.do(b, "POST", "/v1/fn/_", body, ct); status != 201 {
		b.Fatalf("upload: %d %s", status, out)
	}
}

// BenchmarkThousandAgents: 1,000 simulated agents (one process, one QUIC
// connection each) held by one controller process. Reports the controller's
// RSS and CPU at idle with them connected, and the scheduling time per
// decision from the controller's own histogram.
func BenchmarkThousandAgents(b *testing.B) {
	agents := 1000
	if v := os.Getenv("WISP_BENCH_AGENTS"); v != "" {
		agents, _ = strconv.Atoi(v)
	}
	c := startController(b, b.TempDir(), "", "127.0.0.1:0")
	token := c.joinTokenUses(b, "", agents)
	rss0 := procRSS(c.Cmd.Process.Pid)
	var sims []*simAgent
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			a, err := dialSimAgent(ctx, c.quic, token, fmt.Sprintf("sim%04d", i))
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			sims = append(sims, a)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, a := range sims {
			a.Close()
		}
	})
	if len(sims) != agents {
		b.Fatalf("%d of %d agents connected", len(sims), agents)
	}
	c.upload(b, "_", "hello", "hello_wat", nil)
	time.Sleep(3 * time.Second) // let joins, pushes and the first heartbeats settle
	cpu0, t0 := procCPU(c.Cmd.Process.Pid), time.Now()
	time.Sleep(10 * time.Second)
	idleCPU := float64(procCPU(c.Cmd.Process.Pid)-cpu0) / float64(time.Since(t0))
	rss := procRSS(c.Cmd.Process.Pid)

	for b.Loop() {
		if status, body := c.invoke(b, "_", "hello", `{}`); status != 200 {
			if os.Getenv("WISP_BENCH_DUMP") != "" {
				c.Cmd.Process.Signal(syscall.SIGQUIT)
				time.Sleep(2 * time.Second)
			}
			b.Fatalf("%d %s", status, body)
		}
	}
	sum, count := scheduleHistogram(b, c)
	b.ReportMetric(float64(rss)/(1<<20), "controller-rss-MiB")
	b.ReportMetric(float64(rss-rss0)/(1<<10)/float64(agents), "rss-KiB/agent")
	b.ReportMetric(idleCPU*100, "idle-cpu-%")
	if count > 0 {
		b.ReportMetric(sum/count*1e6, "schedule-µs/decision")
	}
}

func scheduleHistogram(b *testing.B, c *controller) (sum, count float64) {
	resp, err := c.getMetrics()
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "wisp_controller_schedule_seconds_sum":
			sum = v
		case "wisp_controller_schedule_seconds_count":
			count = v
		}
	}
	return sum, count
}

// runQUICEchoServer is the body of the helper process quicEchoProcess
// starts: an echo server that prints its address and serves until its stdin
// closes.
func runQUICEchoServer() {
	id, err := fleet.LoadOrCreateIdentity(os.TempDir() + "/wisp-e2e-echo-" + strconv.Itoa(os.Getpid()))
	if err != nil {
		panic(err)
	}
	ln := serveQUICEcho(id)
	fmt.Println(ln.Addr().String())
	io.Copy(io.Discard, os.Stdin)
}

// quicEchoProcess starts a quic-go echo server in another process (this
// test binary again) and returns a function timing one stream round trip
// to it.
func quicEchoProcess(b *testing.B) func() time.Duration {
	_, addr := spawnSelf(b, "WISP_E2E_QUIC_ECHO=1")
	return echoRoundTrip(b, addr)
}

// BenchmarkInvokeLogs: the cost of recording logs on the warm path. Two
// functions that differ only in three __console_log calls (log3 and its
// twin hello_wat) are invoked alternately through REST on one platform;
// their p50 and the ratio are reported, and the store growth each one
// causes per activation (wisp_controller_activations_stored_bytes read
// after a prune pass; the embedded store counts whole pages, so the figure
// is an average over many activations).
func BenchmarkInvokeLogs(b *testing.B) {
	c := startController(b, b.TempDir(), "", "127.0.0.1:0", "--activation-prune-interval", "200ms")
	startAgent(b, c, c.joinToken(b, ""), "edge1", b.TempDir())
	c.upload(b, "_", "nolog", "hello_wat", map[string]string{"wait_for_workers": "true"})
	c.upload(b, "_", "log3", "log3", map[string]string{"wait_for_workers": "true"})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	body := []byte(`{"args":{"name":"Ada"}}`)
	call := func(fn string) time.Duration {
		req, _ := http.NewRequest("POST", c.url+"/v1/fn/_/"+fn, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.admin)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 || !bytes.Contains(out, []byte("Hello Ada!")) {
			b.Fatalf("%s: %d %s", fn, resp.StatusCode, out)
		}
		return d
	}
	for range 50 { // warm both
		call("nolog")
		call("log3")
	}
	var none, logged []time.Duration
	for b.Loop() {
		none = append(none, call("nolog"))
		logged = append(logged, call("log3"))
	}
	b.ReportMetric(float64(pct(none, .5).Microseconds()), "nolog-p50-µs")
	b.ReportMetric(float64(pct(logged, .5).Microseconds()), "log3-p50-µs")
	b.ReportMetric(float64(pct(logged, .5))/float64(pct(none, .5)), "x-log3-vs-nolog")

	// Store growth per activation, each function alone.
	b.StopTimer()
	const n = 2000
	growth := func(fn string) float64 {
		count, before := storedCount(b, c), storedBytes(b, c)
		for range n {
			call(fn)
		}
		// The gauges are set by the pruner's pass after the recorder wrote
		// the last batch.
		waitFor(b, "the pruner's volume reading", func() bool { return storedCount(b, c) >= count+n })
		return (storedBytes(b, c) - before) / n
	}
	nolog := growth("nolog")
	log3 := growth("log3")
	b.ReportMetric(nolog, "nolog-stored-B/act")
	b.ReportMetric(log3, "log3-stored-B/act")
}

// storedBytes and storedCount read the controller's activation volume gauges.
func storedBytes(t testing.TB, c *controller) float64 {
	return controllerGauge(t, c, "wisp_controller_activations_stored_bytes")
}

func storedCount(t testing.TB, c *controller) float64 {
	return controllerGauge(t, c, "wisp_controller_activations_stored")
}

func controllerGauge(t testing.TB, c *controller, name string) float64 {
	t.Helper()
	resp, err := c.getMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("%s not in the controller's /metrics", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
