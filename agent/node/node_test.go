package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// logBuffer is a log the test can search while the agent writes it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// await waits for a log line matching re and returns its first group.
func (l *logBuffer) await(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	testwait.For(t, 30*time.Second, "log line "+re, func() bool {
		m = rx.FindStringSubmatch(l.String())
		return m != nil
	})
	if len(m) > 1 {
		return m[1]
	}
	return ""
}

// agentGoroutines lists the goroutines running this module's agent code
// (but the test's own).
func agentGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:goruntime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// The test's own goroutine that called Run (start) may still be
		// on its way out after Run returned: it is not the agent's.
		if strings.Contains(g, "agent/node.start.func1") && !strings.Contains(g, "node.Run(") {
			continue
		}
		if strings.Contains(g, "github.com/wispfn/wisp/agent/") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

// running is an agent Run in the background.
type running struct {
	log    *logBuffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's, once done is closed
}

// start runs an agent with cfg in the background; the test's end stops it.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if n := agentGoroutines(); len(n) > 0 {
		t.Fatalf("agent goroutines before the test:\n%s", strings.Join(n, "\n\n"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{log: &logBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = Run(ctx, cfg, slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// wait returns Run's error once it returned.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(60 * time.Second):
		t.Fatalf("Run did not return within 60s; log:\n%s", r.log)
		return nil
	}
}

// stop ends Run's context and waits for it.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// config is an agent with every part on: the local API and metrics on
// port 0, the test broker, and a controller address nobody answers.
func config(t *testing.T) Config {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0") // a port that stays silent
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	return Config{
		Controllers: []string{udp.LocalAddr().String()},
		DataDir:     t.TempDir(),
		Name:        "node-test",
		MetricsAddr: "127.0.0.1:0",
		LocalAPI:    "127.0.0.1:0",
		MQTTBroker:  "tcp://" + testenv.Mosquitto(t),
		Timeout:     5 * time.Second,
		MemoryMiB:   64,
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunWaitsForItsGoroutines: with every part running (controller link,
// local API, metrics, MQTT triggers), Run returns after its context ends
// only once no goroutine of the agent's code is left, and its listeners
// are closed.
func TestRunWaitsForItsGoroutines(t *testing.T) {
	cfg := config(t)
	// An identity of its own lets the triggers start without a controller
	// (their MQTT client id is the agent id).
	st, err := state.Open(filepath.Join(cfg.DataDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetIdentity(state.Identity{AgentID: "node-test-" + testenv.Unique(), Credential: []byte("c"), Controller: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	r := start(t, cfg)
	log := r.log
	apiAddr := log.await(t, `msg="local invoke API" addr=(\S+)`)
	metricsAddr := log.await(t, `msg=metrics addr=(\S+)`)
	log.await(t, `triggers: connected to the MQTT broker`)
	log.await(t, `controller link down, reconnecting`)
	if s := get(t, "http://"+apiAddr+"/v1/"); s != 200 {
		t.Fatalf("local API: %d", s)
	}
	if s := get(t, "http://"+metricsAddr+"/metrics"); s != 200 {
		t.Fatalf("metrics: %d", s)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkStopped(t, apiAddr, metricsAddr)
}

// checkStopped fails t if agent goroutines are left or the listeners at
// addrs still answer.
func checkStopped(t *testing.T, addrs ...string) {
	t.Helper()
	if left := agentGoroutines(); len(left) > 0 {
		t.Fatalf("%d agent goroutines still running after Run returned:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	for _, addr := range addrs {
		if s := get(t, "http://"+addr+"/"); s != 0 {
			t.Errorf("%s still answers after Run returned (%d)", addr, s)
		}
	}
}

// TestRunStopsEverythingWhenRefused: a controller that refuses the agent
// for good (here: no identity and no join token) ends Run with that error,
// and Run stops and waits for every other part first.
func TestRunStopsEverythingWhenRefused(t *testing.T) {
	r := start(t, config(t))
	err := r.wait(t)
	if !errors.Is(err, link.ErrRefused) {
		t.Fatalf("Run: %v, want link.ErrRefused", err)
	}
	apiAddr := r.log.await(t, `msg="local invoke API" addr=(\S+)`)
	metricsAddr := r.log.await(t, `msg=metrics addr=(\S+)`)
	checkStopped(t, apiAddr, metricsAddr)
}
