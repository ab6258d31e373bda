package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/simagent"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/internal/testing/testproc"
)

// The scale benchmarks (issue 15, point 3): 10,000 simulated agents
// (internal/simagent: real QUIC sessions, one UDP socket, in this process)
// held by controller processes on one Postgres. They measure, on each
// controller process:
//
//   - rss-KiB/agent: (VmRSS with the agents connected − VmRSS before any
//     joined) / agents, the median of one sample per idle window;
//   - rss-gc-KiB/agent: the same after two forced collections and 15 s
//     (what an idle controller comes to: the runtime collects every 2
//     minutes), when the controller serves pprof;
//   - idle-cpu-%: utime+stime over an idle window of WISP_BENCH_IDLE
//     (default 20 s) as a percentage of one core, the median of
//     WISP_BENCH_WINDOWS windows (default 3), with the spread (min, max);
//   - schedule-µs: the mean of the controller's own schedule histogram
//     (wisp_controller_schedule_seconds) over the invocations of the
//     benchmark loop, and its p50 read from the buckets (coarse: 1, 4, 16,
//     64 µs...). The exact pick cost is controller/fleet's
//     BenchmarkSchedule10000.
//
// Each takes minutes (10,000 joins), whatever -benchtime: the agents join
// once and the loop only invokes. Run one with
//
//	go test -run '^$' -bench 'TenThousandAgents$' -benchtime 200x -timeout 60m ./internal/e2e/
//
// WISP_BENCH_AGENTS changes the number of agents. WISP_BENCH_BASE_CONTROLLER,
// the path of another wisp-controller build (the one before a change),
// runs it first in the same benchmark ("base") with agents that behave as
// the agent before issue 15 (QUIC keep-alive every 2 s), then this tree's
// ("new"), so the two figures come from one run. WISP_BENCH_PROFILE_DIR
// writes each controller's heap, goroutine and CPU profiles there with the
// agents connected. The controllers must serve pprof (--pprof-addr; to
// measure a build from before it, add cmd/wisp-controller/pprof.go and
// its setting to that build).
// WISP_BENCH_STALL=10s stops the first controller that long at the end
// (SIGSTOP, then SIGCONT) and reports how long its agents take to come
// back (recovery-s). WISP_BENCH_CONTROLLER_ENV adds space-separated
// NAME=value pairs to the controllers' environment (GOGC=50, GODEBUG=...).

// BenchmarkTenThousandAgents: 10,000 agents on one controller.
func BenchmarkTenThousandAgents(b *testing.B) { scaleBench(b, 1) }

// BenchmarkTenThousandAgentsThreeControllers: the same 10,000 agents
// spread over three controllers (each agent on one of them, in turn) on one
// Postgres, sharing their identity files.
func BenchmarkTenThousandAgentsThreeControllers(b *testing.B) { scaleBench(b, 3) }

func scaleBench(b *testing.B, controllers int) {
	agents := 10000
	if v := os.Getenv("WISP_BENCH_AGENTS"); v != "" {
		agents, _ = strconv.Atoi(v)
	}
	if base := os.Getenv("WISP_BENCH_BASE_CONTROLLER"); base != "" {
		b.Run("base", func(b *testing.B) { scaleRun(b, base, true, controllers, agents) })
		b.Run("new", func(b *testing.B) { scaleRun(b, filepath.Join(bin, "wisp-controller"), false, controllers, agents) })
		return
	}
	scaleRun(b, filepath.Join(bin, "wisp-controller"), false, controllers, agents)
}

// scaleController is one controller process of a scale run.
type scaleController struct {
	*controller
	metricsAddr, pprofAddr string
	share                  int // agents connected to it
	rss0                   int64
	mem0                   map[string]float64 // the Go runtime's figures before any agent joined
}

// goMemory are the Go runtime's figures the scale benchmarks log, to say
// where the resident memory is.
var goMemory = []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_heap_idle_bytes",
	"go_memstats_heap_released_bytes", "go_memstats_next_gc_bytes", "go_memstats_sys_bytes"}

// memoryPerAgent formats the growth of goMemory per agent since m0.
func memoryPerAgent(m0, m1 map[string]float64, agents int) string {
	var parts []string
	for _, k := range goMemory {
		d := (m1[k] - m0[k]) / float64(agents)
		if strings.HasSuffix(k, "_bytes") {
			parts = append(parts, fmt.Sprintf("%s %.1f KiB", strings.TrimPrefix(k, "go_memstats_"), d/1024))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.TrimPrefix(k, "go_"), d))
		}
	}
	return strings.Join(parts, ", ")
}

func scaleRun(b *testing.B, binary string, legacy bool, controllers, agents int) {
	dsn := testpg.Schema(b, 0)
	dirs := make([]string, controllers)
	for i := range dirs {
		dirs[i] = b.TempDir()
	}
	var cs []*scaleController
	for i := range controllers {
		if i > 0 {
			// One identity for the cluster: the agents pin one key, and
			// secrets sealed by one controller open on the others.
			for _, f := range []string{"controller.crt", "controller.key", "secrets.key", "admin.token"} {
				data, err := os.ReadFile(filepath.Join(dirs[0], f))
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dirs[i], f), data, 0o600); err != nil {
					b.Fatal(err)
				}
			}
		}
		cs = append(cs, startScaleController(b, binary, dirs[i], dsn))
	}
	for i := range agents {
		cs[i%controllers].share++
	}
	// Uses to spare: a join the controller took but the agent timed out on
	// is retried, and spends another.
	tokenArgs := []string{"token", "create", "--uses", strconv.Itoa(agents + agents/10), "--data-dir", dirs[0], "--database-url", dsn, "--url", cs[0].url}
	out, err := exec.Command(binary, tokenArgs...).Output()
	if err != nil {
		b.Fatalf("token create: %v %s", err, out)
	}
	token := strings.TrimSpace(string(out))
	time.Sleep(2 * time.Second) // the controllers' start-up work settles
	for _, c := range cs {
		c.rss0 = procRSS(c.Cmd.Process.Pid)
		c.mem0 = scrape(b, c.metricsAddr)
	}

	opts := simagent.Options{}
	if legacy {
		opts.KeepAlive = 2 * time.Second // agent/link before issue 15
	}
	swarm, err := simagent.New(nil, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(swarm.Close)
	t0 := time.Now()
	// A controller that cannot take the agents in 5 minutes fails the run
	// (the agents it took keep retrying the others, as real ones would).
	joinCtx, stopJoining := context.WithTimeout(context.Background(), 5*time.Minute)
	defer stopJoining()
	var retried, failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A real agent retries a join that timed out.
			var err error
			for try := range 10 {
				if try > 0 {
					retried.Add(1)
					time.Sleep(time.Duration(try) * 500 * time.Millisecond)
				}
				if joinCtx.Err() != nil {
					break
				}
				ctx, cancel := context.WithTimeout(joinCtx, 30*time.Second)
				_, err = swarm.Dial(ctx, cs[i%controllers].quic, token, fmt.Sprintf("sim%05d", i), nil)
				cancel()
				if err == nil {
					return
				}
			}
			if failed.Add(1) <= 5 {
				b.Errorf("agent %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	joinTime := time.Since(t0)
	if failed.Load() > 0 {
		b.Fatalf("%d of %d agents failed to join in %v (%d joins retried)", failed.Load(), agents, joinTime.Round(time.Second), retried.Load())
	}
	// A controller that cannot hold its agents drops some (they come
	// back): that shows in idle-reconnects, and does not stop the run.
	for _, c := range cs {
		var n float64
		deadline := time.Now().Add(time.Minute)
		for n = connectedTo(b, c); n != float64(c.share) && time.Now().Before(deadline); n = connectedTo(b, c) {
			time.Sleep(200 * time.Millisecond)
		}
		if n != float64(c.share) {
			b.Logf("%s: %v of %d agents connected after a minute", c.Name, n, c.share)
		}
	}
	joined := fmt.Sprintf("%d agents joined %d controller(s) in %v (%d joins retried, %d sessions made again)", agents, controllers,
		joinTime.Round(time.Millisecond), retried.Load(), reconnects(swarm))
	cs[0].upload(b, "_", "hello", "hello_wat", nil) // pushed to cs[0]'s agents
	// Pushes, desired sets and first reports settle: until a 2-s sample
	// of each controller's CPU is under half a core, for at most a minute.
	settled := time.Now()
	for _, c := range cs {
		for time.Since(settled) < time.Minute {
			cpu0 := procCPU(c.Cmd.Process.Pid)
			time.Sleep(2 * time.Second)
			if procCPU(c.Cmd.Process.Pid)-cpu0 < time.Second {
				break
			}
		}
	}
	b.Logf("%s; settled in %v", joined, time.Since(settled).Round(time.Second))

	idle := 20 * time.Second
	if v := os.Getenv("WISP_BENCH_IDLE"); v != "" {
		idle, _ = time.ParseDuration(v)
	}
	windows := 3
	if v := os.Getenv("WISP_BENCH_WINDOWS"); v != "" {
		windows, _ = strconv.Atoi(v)
	}
	r0 := reconnects(swarm)
	cpu := make([][]float64, len(cs)) // % of one core, per controller per window
	rss := make([][]float64, len(cs)) // KiB per agent
	for range windows {
		before := make([]time.Duration, len(cs))
		for i, c := range cs {
			before[i] = procCPU(c.Cmd.Process.Pid)
		}
		w0 := time.Now()
		time.Sleep(idle)
		wall := time.Since(w0)
		for i, c := range cs {
			cpu[i] = append(cpu[i], 100*float64(procCPU(c.Cmd.Process.Pid)-before[i])/float64(wall))
			rss[i] = append(rss[i], float64(procRSS(c.Cmd.Process.Pid)-c.rss0)/1024/float64(c.share))
		}
	}
	// Sessions the controllers dropped while idle (missed load reports,
	// idle timeouts) and the agents made again: 0 when they hold.
	idleReconnects := reconnects(swarm) - r0
	if ends := swarm.Ends(); len(ends) > 0 {
		b.Logf("sessions ended or redials failed (so far): %v", topEnds(ends, 5))
	}
	notes := make([]string, len(cs)) // what each controller's line says
	for i, c := range cs {
		notes[i] = "per agent: " + memoryPerAgent(c.mem0, scrape(b, c.metricsAddr), c.share)
	}
	// The same after the runtime's next collections (forced here through
	// pprof, twice: sync.Pool keeps its contents for one; an idle Go
	// process collects every 2 minutes anyway) and 15 s of scavenging.
	var rssGC []float64
	if cs[0].pprofAddr != "" {
		for range 2 {
			for _, c := range cs {
				forceGC(b, c.pprofAddr)
			}
		}
		time.Sleep(15 * time.Second)
		for i, c := range cs {
			rssGC = append(rssGC, float64(procRSS(c.Cmd.Process.Pid)-c.rss0)/1024/float64(c.share))
			notes[i] += fmt.Sprintf("; after GC: RSS %.1f KiB/agent, %s", rssGC[i], memoryPerAgent(c.mem0, scrape(b, c.metricsAddr), c.share))
		}
	}
	for _, c := range cs {
		if n := connectedTo(b, c); n != float64(c.share) {
			b.Logf("%s: %v of %d agents connected after the idle windows", c.Name, n, c.share)
		}
	}
	if dir := os.Getenv("WISP_BENCH_PROFILE_DIR"); dir != "" {
		build := "new"
		if legacy {
			build = "base"
		}
		for i, c := range cs {
			for _, p := range []string{"heap?gc=1", "goroutine", "profile?seconds=10"} {
				name, _, _ := strings.Cut(p, "?") // heap after a GC; profile: 10 s of CPU at idle
				saveProfile(b, c.pprofAddr, p, filepath.Join(dir, fmt.Sprintf("%s-%s-%dc-%d-%d.pb.gz", build, name, controllers, agents, i)))
			}
		}
		b.Logf("profiles: %s", filepath.Join(dir, fmt.Sprintf("%s-*-%dc-%d-*.pb.gz", build, controllers, agents)))
	}

	m0 := scrape(b, cs[0].metricsAddr)
	b.ResetTimer()
	for b.Loop() {
		if status, body := cs[0].invoke(b, "_", "hello", `{}`); status != 200 {
			b.Fatalf("%d %s", status, body)
		}
	}
	b.StopTimer()
	m1 := scrape(b, cs[0].metricsAddr)

	var allCPU, allRSS []float64
	for i, c := range cs {
		b.Logf("%s: %d agents, RSS %.1f MiB before, KiB/agent per window %.1f, idle CPU %% per window %.1f; %s",
			c.Name, c.share, float64(c.rss0)/(1<<20), rss[i], cpu[i], notes[i])
		allCPU = append(allCPU, median(cpu[i]))
		allRSS = append(allRSS, median(rss[i]))
	}
	var flat []float64
	for _, w := range cpu {
		flat = append(flat, w...)
	}
	b.ReportMetric(mean(allRSS), "rss-KiB/agent")
	if len(rssGC) > 0 {
		b.ReportMetric(mean(rssGC), "rss-gc-KiB/agent")
	}
	b.ReportMetric(mean(allCPU), "idle-cpu-%")
	b.ReportMetric(slices.Min(flat), "idle-cpu-min-%")
	b.ReportMetric(slices.Max(flat), "idle-cpu-max-%")
	b.ReportMetric(joinTime.Seconds(), "join-s")
	b.ReportMetric(float64(idleReconnects), "idle-reconnects")
	if n := m1["wisp_controller_schedule_seconds_count"] - m0["wisp_controller_schedule_seconds_count"]; n > 0 {
		sum := m1["wisp_controller_schedule_seconds_sum"] - m0["wisp_controller_schedule_seconds_sum"]
		b.ReportMetric(sum/n*1e6, "schedule-mean-µs")
		b.ReportMetric(histogramP50(m0, m1, "wisp_controller_schedule_seconds")*1e6, "schedule-p50-µs")
	}
	if v := os.Getenv("WISP_BENCH_STALL"); v != "" {
		stallAndRecover(b, cs[0], swarm, v)
	}
}

// stallAndRecover stops the controller c (SIGSTOP) for the duration d,
// longer than the idle timeout, so that every session it holds times out
// at once on both sides, then lets it go on and reports how long its
// agents take to be connected again (recovery-s) and how many sessions
// they made meanwhile.
func stallAndRecover(b *testing.B, c *scaleController, swarm *simagent.Swarm, d string) {
	stall, err := time.ParseDuration(d)
	if err != nil {
		b.Fatalf("WISP_BENCH_STALL: %v", err)
	}
	r0 := reconnects(swarm)
	c.Cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(stall)
	c.Cmd.Process.Signal(syscall.SIGCONT)
	t0 := time.Now()
	var n float64
	for n = connectedTo(b, c); n != float64(c.share) && time.Since(t0) < 5*time.Minute; n = connectedTo(b, c) {
		time.Sleep(500 * time.Millisecond)
	}
	b.Logf("%s stopped %v: %v of %d agents connected %v after it went on; %d sessions made again; ends so far: %v", c.Name, stall, n, c.share,
		time.Since(t0).Round(100*time.Millisecond), reconnects(swarm)-r0, topEnds(swarm.Ends(), 5))
	if n != float64(c.share) {
		b.Errorf("%v of %d agents connected 5 minutes after a %v stall", n, c.share, stall)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "recovery-s")
}

// startScaleController starts binary on dataDir and Postgres at dsn, with
// its metrics and its profiles on their own listeners.
func startScaleController(b *testing.B, binary, dataDir, dsn string) *scaleController {
	b.Helper()
	args := []string{"--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir, "--database-url", dsn,
		"--metrics-addr", "127.0.0.1:0", "--pprof-addr", "127.0.0.1:0"}
	name := fmt.Sprintf("wisp-controller %s", filepath.Base(dataDir))
	env := []string{"WISP_TLS=off", "WISP_LOG_LEVEL=info"}
	if v := os.Getenv("WISP_BENCH_CONTROLLER_ENV"); v != "" {
		env = append(env, strings.Fields(v)...) // GOGC=50 GODEBUG=..., to try the runtime's settings
	}
	p := testproc.Start(b, name, binary, env, args...)
	c := &scaleController{controller: &controller{proc: p, dataDir: dataDir}}
	c.url = "http://" + p.Await(`msg="REST API listening" addr=(\S+)`)
	c.quic = p.Await(`msg="QUIC listening" addr=(\S+)`)
	c.metricsAddr = p.Await(`msg=metrics addr=(\S+)`)
	c.pprofAddr = p.Await(`msg="pprof listening" addr=(\S+)`)
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		b.Fatal(err)
	}
	c.admin = strings.TrimSpace(string(tok))
	return c
}

// topEnds is the n most frequent reasons of ends, with their counts.
func topEnds(ends map[string]int, n int) string {
	reasons := slices.Collect(maps.Keys(ends))
	slices.SortFunc(reasons, func(a, b string) int { return ends[b] - ends[a] })
	var out []string
	for _, r := range reasons[:min(n, len(reasons))] {
		out = append(out, fmt.Sprintf("%d× %s", ends[r], r))
	}
	return strings.Join(out, "; ")
}

func reconnects(s *simagent.Swarm) int64 {
	var n int64
	for _, a := range s.Agents() {
		n += a.Reconnects()
	}
	return n
}

func connectedTo(b *testing.B, c *scaleController) float64 {
	return scrape(b, c.metricsAddr)["wisp_controller_agents_connected"]
}

// scrape reads every unlabelled sample and every histogram bucket of a
// /metrics page.
func scrape(b *testing.B, addr string) map[string]float64 {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// histogramP50 estimates the median of the observations of histogram name
// made between two scrapes, interpolating linearly inside its bucket.
func histogramP50(m0, m1 map[string]float64, name string) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m1 {
		le, ok := strings.CutPrefix(k, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le = strings.TrimSuffix(le, `"}`)
		f, err := strconv.ParseFloat(le, 64)
		if err != nil {
			f = math.Inf(1)
		}
		bs = append(bs, bucket{f, v - m0[k]})
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0
	}
	half, lo, below := bs[len(bs)-1].n/2, 0.0, 0.0
	for _, bk := range bs {
		if bk.n >= half {
			if math.IsInf(bk.le, 1) {
				return lo
			}
			return lo + (bk.le-lo)*(half-below)/(bk.n-below)
		}
		lo, below = bk.le, bk.n
	}
	return lo
}

// forceGC has the controller at addr collect (pprof's heap?gc=1).
func forceGC(b *testing.B, addr string) {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func saveProfile(b *testing.B, addr, profile, path string) {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + profile)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}
