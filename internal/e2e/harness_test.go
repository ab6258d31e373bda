package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testproc"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

var bin string // directory holding the built binaries

// faultBin is the wisp-agent built with -tags wispfault (internal/fault),
// for the tests that need an agent to die or stall on cue.
var faultBin string

func TestMain(m *testing.M) {
	if os.Getenv("WISP_E2E_QUIC_ECHO") == "1" {
		defer traceFloor("echo")()
		runQUICEchoServer() // this process is the other end of a floor measurement
		return
	}
	if addr := os.Getenv(chainHTTPEnv); addr != "" {
		defer traceFloor("chain-http")()
		runChainHTTPServer(addr) // the middle hop of the chained floor
		return
	}
	dir, err := os.MkdirTemp("", "wisp-e2e-")
	if err != nil {
		panic(err)
	}
	bin = dir
	// The binaries are built without the race detector even under -race:
	// the in-process fleet tests cover races, and race-built processes on
	// two cores would make every timing here meaningless.
	args := []string{"build", "-o", dir + "/", "../../cmd/wisp-controller", "../../cmd/wisp-agent", "../../cmd/wisp"}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building binaries: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	faultBin = filepath.Join(dir, "fault", "wisp-agent")
	if out, err := exec.Command("go", "build", "-tags", "wispfault", "-o", faultBin, "../../cmd/wisp-agent").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the fault agent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary whose log we watch.
type proc = testproc.Proc

// start runs one of the built binaries; name's first word is the binary.
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, nil, args...)
}

// startEnv is start with environment variables added.
func startEnv(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	return testproc.Start(t, name, filepath.Join(bin, strings.Fields(name)[0]), append([]string{"WISP_LOG_LEVEL=debug"}, env...), args...)
}

// controller is a running wisp-controller.
type controller struct {
	*proc
	dataDir, url, quic, admin string
	// id is the controller's instance id (--controller-id): GET
	// /v1/agents names the controllers each agent has a session with.
	id string
}

// startController runs wisp-controller on dataDir (and Postgres at dsn, if
// not empty) with extra flags.
func startController(t testing.TB, dataDir, dsn, quicAddr string, extra ...string) *controller {
	t.Helper()
	return startControllerEnv(t, dataDir, dsn, quicAddr, nil, extra...)
}

// startControllerEnv is startController with environment variables added.
func startControllerEnv(t testing.TB, dataDir, dsn, quicAddr string, env []string, extra ...string) *controller {
	t.Helper()
	args := []string{"--listen", "127.0.0.1:0", "--quic-listen", quicAddr, "--data-dir", dataDir}
	if dsn != "" {
		args = append(args, "--database-url", dsn)
	}
	args = append(args, extra...)
	// Plain HTTP unless a test chooses TLS (a variable, which binaries from
	// before --tls ignore: the benchmarks run those too).
	env = append([]string{"WISP_TLS=off"}, env...)
	// A known instance id (a variable, for the same reason), unless the
	// test chose one.
	id := "ctl-" + testenv.Unique()
	for i, a := range extra {
		if a == "--controller-id" && i+1 < len(extra) {
			id = extra[i+1]
		}
	}
	env = append([]string{"WISP_CONTROLLER_ID=" + id}, env...)
	p := startEnv(t, "wisp-controller", env, args...)
	c := &controller{proc: p, dataDir: dataDir, id: id}
	c.url = "http://" + p.Await(`msg="REST API listening" addr=(\S+)`)
	c.quic = p.Await(`msg="QUIC listening" addr=(\S+)`)
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = strings.TrimSpace(string(tok))
	return c
}

// joinToken runs `wisp-controller token create`.
func (c *controller) joinToken(t testing.TB, dsn string) string {
	t.Helper()
	// One token for every agent a test starts (a token lets one agent in
	// by default).
	return c.joinTokenUses(t, dsn, 100)
}

// joinTokenUses is joinToken for uses agents.
func (c *controller) joinTokenUses(t testing.TB, dsn string, uses int) string {
	t.Helper()
	args := []string{"token", "create", "--uses", strconv.Itoa(uses), "--data-dir", c.dataDir, "--url", c.url}
	if dsn != "" {
		args = append(args, "--database-url", dsn)
	}
	out, err := exec.Command(filepath.Join(bin, "wisp-controller"), args...).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tok, "wispjoin1.") {
		t.Fatalf("token create printed %q", out)
	}
	return tok
}

// startAgent runs wisp-agent with extra flags after the test's own.
func startAgent(t testing.TB, c *controller, token, name, dataDir string, extra ...string) *proc {
	t.Helper()
	return startAgentEnv(t, c, token, name, dataDir, nil, extra...)
}

// startAgentEnv is startAgent with environment variables added.
func startAgentEnv(t testing.TB, c *controller, token, name, dataDir string, env []string, extra ...string) *proc {
	t.Helper()
	p := startEnv(t, "wisp-agent "+name, append(tokenEnv(token), env...), agentArgs(c, name, dataDir, extra...)...)
	p.Await(`msg=connected`)
	return p
}

// agentArgs are the flags of an agent of c named name, with extra flags.
func agentArgs(c *controller, name, dataDir string, extra ...string) []string {
	args := []string{"run", "--controllers", c.quic, "--data-dir", dataDir, "--agent-name", name, "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0"}
	return append(args, extra...)
}

// tokenEnv hands an agent its join token as the README says: in the
// environment, never on its command line (TestJoinTokenNotOnCommandLine).
func tokenEnv(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"WISP_JOIN_TOKEN=" + token}
}

// startFaultAgent runs the wispfault build of wisp-agent with WISP_FAULT
// set to fault (see internal/fault).
func startFaultAgent(t testing.TB, c *controller, token, name, dataDir, fault string) *proc {
	t.Helper()
	p := testproc.Start(t, "wisp-agent "+name+" (fault "+fault+")", faultBin, append([]string{"WISP_LOG_LEVEL=debug", "WISP_FAULT=" + fault}, tokenEnv(token)...),
		agentArgs(c, name, dataDir)...)
	p.Await(`msg=connected`)
	return p
}

// do sends a REST request with the admin token and decodes the answer.
func (c *controller) do(t testing.TB, method, path string, body io.Reader, contentType string) (int, []byte) {
	t.Helper()
	return testhttp.Do(t, method, c.url+path, c.admin, contentType, body)
}

func (c *controller) upload(t testing.TB, module, name, fixture string, fields map[string]string) {
	t.Helper()
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", fixture+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if status, body := c.uploadCode(t, module, name, code, fields); status != 201 {
		t.Fatalf("upload %s: %d %s", name, status, body)
	}
}

// uploadCode creates a function from code and returns the answer.
func (c *controller) uploadCode(t testing.TB, module, name string, code []byte, fields map[string]string) (int, []byte) {
	t.Helper()
	all := map[string]string{"name": name}
	maps.Copy(all, fields)
	form, ct := testhttp.Multipart(all, "code", name+".wasm", code)
	return c.do(t, "POST", "/v1/fn/"+module, form, ct)
}

func (c *controller) invoke(t testing.TB, module, name, body string) (int, string) {
	t.Helper()
	status, b := c.do(t, "POST", "/v1/fn/"+module+"/"+name, strings.NewReader(body), "application/json")
	return status, string(b)
}

type agentInfo struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Connected     bool     `json:"connected"`
	Controllers   []string `json:"controllers"`
	Digests       int      `json:"digests"`
	Labels        []string `json:"labels"`
	Cordoned      bool     `json:"cordoned"`
	MemBoundBytes uint64   `json:"mem_bound_bytes"`
}

func (c *controller) agents(t testing.TB) []agentInfo {
	t.Helper()
	status, b := c.do(t, "GET", "/v1/agents", nil, "")
	if status != 200 {
		t.Fatalf("GET /v1/agents: %d %s", status, b)
	}
	var env struct{ Data []agentInfo }
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

// connected returns the agents that have a session with c, by name
// (connected means with any controller of the cluster; Controllers names
// which).
func (c *controller) connected(t testing.TB) map[string]agentInfo {
	out := map[string]agentInfo{}
	for _, a := range c.agents(t) {
		if a.Connected && slices.Contains(a.Controllers, c.id) {
			out[a.Name] = a
		}
	}
	return out
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 30*time.Second, what, cond)
}

// metric scrapes one value from an agent's /metrics.
func metric(t testing.TB, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		return ""
	}
	return m[1]
}

// getMetrics GETs the controller's /metrics with the admin token (which it
// needs on the REST port).
func (c *controller) getMetrics() (*http.Response, error) {
	req, err := http.NewRequest("GET", c.url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.admin)
	return http.DefaultClient.Do(req)
}
