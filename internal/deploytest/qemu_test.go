package deploytest

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testproc"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// edge is one agent of TestAgentsUnderQEMU.
type edge struct {
	name, goarch, goarm string
	qemu                string // "" runs natively
	wantArch, wantEng   string
}

// TestAgentsUnderQEMU runs the release agents for the Raspberry Pi
// architectures under qemu-user against a native controller, invokes
// hello_c.wasm on each through an APP script that names the agent, and logs
// the latencies beside a native agent's. Under emulation the arm64 agent runs
// wazero's compiler (arm64 code, translated by qemu) and the armv7 agent
// wazero's interpreter (Go code, translated by qemu): the figures say how far
// apart those are, not how fast a real Pi is.
func TestAgentsUnderQEMU(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("needs a linux/amd64 host, this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	for _, q := range []string{"qemu-aarch64-static", "qemu-arm-static"} {
		if _, err := exec.LookPath(q); err != nil {
			testenv.Missing(t, "qemu-user-static", q+" not found; install the Debian package qemu-user-static (scripts/install-toolchains.sh)")
		}
	}
	if testing.Short() {
		t.Skip("-short: builds two cross agents and runs them under emulation")
	}
	edges := []edge{
		{name: "edge_arm64", goarch: "arm64", qemu: "qemu-aarch64-static", wantArch: "arm64", wantEng: "compiler"},
		{name: "edge_armv7", goarch: "arm", goarm: "7", qemu: "qemu-arm-static", wantArch: "arm", wantEng: "interpreter"},
		{name: "edge_amd64", goarch: "amd64", wantArch: "amd64", wantEng: "compiler"},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(edges))
	for i, e := range edges {
		if e.qemu == "" {
			continue
		}
		wg.Go(func() { errs[i] = build(filepath.Join(bin, e.name), e.goarch, e.goarm, "./cmd/wisp-agent") })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	ctlDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", nativeBin("wisp-controller"), "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", ctlDir, "--tls", "off")
	api := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	quic := ctl.Await(`msg="QUIC listening" addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(ctlDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := client{url: api, token: strings.TrimSpace(string(admin))}
	out, err := exec.Command(nativeBin("wisp-controller"), "token", "create", "--uses", strconv.Itoa(len(edges)), "--data-dir", ctlDir, "--url", api).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	join := strings.TrimSpace(string(out))

	for _, e := range edges {
		path := nativeBin("wisp-agent")
		var argv []string
		if e.qemu != "" {
			path, argv = e.qemu, []string{filepath.Join(bin, e.name, "wisp-agent")}
		}
		argv = append(argv, "run", "--controllers", quic, "--join-token", join, "--data-dir", t.TempDir(),
			"--agent-name", e.name, "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0", "--mqtt-broker", "")
		startProc(t, e.name, path, argv...)
	}

	// GET /v1/agents: every agent connected, with its arch and engine.
	type agentInfo struct {
		Name      string `json:"name"`
		Connected bool   `json:"connected"`
		Arch      string `json:"arch"`
		Engine    string `json:"engine"`
		Version   string `json:"version"`
	}
	var agents map[string]agentInfo
	testwait.For(t, 60*time.Second, "three agents connected", func() bool {
		var env struct{ Data []agentInfo }
		if status, body := c.do(t, "GET", "/v1/agents", nil, ""); status != 200 || json.Unmarshal(body, &env) != nil {
			return false
		}
		agents = map[string]agentInfo{}
		for _, a := range env.Data {
			if a.Connected {
				agents[a.Name] = a
			}
		}
		return len(agents) == len(edges)
	})
	for _, e := range edges {
		a := agents[e.name]
		if a.Arch != e.wantArch || a.Engine != e.wantEng {
			t.Errorf("%s: GET /v1/agents shows arch %q engine %q, want %q %q", e.name, a.Arch, a.Engine, e.wantArch, e.wantEng)
		}
	}

	code, err := os.ReadFile(filepath.Join(repo, "testdata", "wasm", "hello_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	body, ct := testhttp.Multipart(map[string]string{"name": "hello"}, "code", "hello_c.wasm", code)
	if status, b := c.do(t, "POST", "/v1/fn/_", body, ct); status != 201 {
		t.Fatalf("upload hello: %d %s", status, b)
	}

	const warm = 20
	type figure struct {
		first, median, min time.Duration
	}
	figures := map[string]figure{}
	for _, e := range edges {
		script := "to_" + e.name
		yaml := "- default:\n    - workers: [" + e.name + "]\n  followup: fail\n"
		body, ct := testhttp.Multipart(map[string]string{"name": script}, "file", script+".yaml", []byte(yaml))
		if status, b := c.do(t, "POST", "/v1/scripts/app", body, ct); status != 200 && status != 201 {
			t.Fatalf("create APP script %s: %d %s", script, status, b)
		}
		req := `{"args":{"name":"Ada"},"scheduling":{"language":"app","script":"` + script + `"}}`
		invoke := func() time.Duration {
			start := time.Now()
			status, b := c.do(t, "POST", "/v1/fn/_/hello", strings.NewReader(req), "application/json")
			d := time.Since(start)
			if status != 200 || !bytes.Contains(b, []byte(`"payload":"Hello Ada!"`)) {
				t.Fatalf("invoke on %s: %d %s", e.name, status, b)
			}
			return d
		}
		f := figure{first: invoke()}
		var ds []time.Duration
		for range warm {
			ds = append(ds, invoke())
		}
		slices.Sort(ds)
		f.median, f.min = ds[len(ds)/2], ds[0]
		figures[e.name] = f
	}
	native := figures["edge_amd64"].median
	for _, e := range edges {
		f := figures[e.name]
		how := "native"
		if e.qemu != "" {
			how = "under " + e.qemu
		}
		t.Logf("%-10s %-5s %-11s %-24s first %8s  warm median %8s  min %8s  (%.1fx native)",
			e.name, e.wantArch, e.wantEng, how, f.first.Round(time.Microsecond), f.median.Round(time.Microsecond),
			f.min.Round(time.Microsecond), float64(f.median)/float64(native))
	}
	arm64, armv7 := figures["edge_arm64"].median, figures["edge_armv7"].median
	t.Logf("armv7 (interpreter) warm median is %.1fx arm64 (compiler), both under qemu-user; %d warm calls each, end to end through the controller's REST API",
		float64(armv7)/float64(arm64), warm)
}

// client talks to the controller's REST API with the admin token.
type client struct{ url, token string }

func (c client) do(t *testing.T, method, path string, body io.Reader, contentType string) (int, []byte) {
	t.Helper()
	return testhttp.Do(t, method, c.url+path, c.token, contentType, body)
}

// startProc runs a binary for the test; see internal/testing/testproc.
func startProc(t *testing.T, name, path string, args ...string) *testproc.Proc {
	t.Helper()
	return testproc.Start(t, name, path, nil, args...)
}
