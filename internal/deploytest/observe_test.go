package deploytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// Files of "Dashboards and alerts".
const (
	alertRules     = "builds/prometheus/wisp-alerts.yml"
	alertRuleTests = "builds/prometheus/wisp-alerts.test.yml"
	dashboard      = "builds/grafana/wisp.json"
)

// prometheusOwn are the series Prometheus makes itself; no binary exports them.
var prometheusOwn = map[string]bool{"up": true}

// promtool finds promtool, or skips (fails under WISP_REQUIRE_SERVICES=1).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool", "install the Debian package prometheus (scripts/install-toolchains.sh)")
	}
	return p
}

// TestAlertRules runs `promtool check rules` on the alert rules and
// `promtool test rules` on their unit tests, and checks that promtool
// refuses a broken copy of each (so that this test can fail).
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	run := func(dir string, args ...string) (string, error) {
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	dir := filepath.Join(repo, "builds", "prometheus")
	if out, err := run(dir, "check", "rules", filepath.Base(alertRules)); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertRules, err, out)
	}
	if out, err := run(dir, "test", "rules", filepath.Base(alertRuleTests)); err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", alertRuleTests, err, out)
	}

	rules, err := os.ReadFile(filepath.Join(repo, alertRules))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(repo, alertRuleTests))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, file, old, new, cmd string }{
		{"bad PromQL", alertRules, "wisp_agent_link_connected == 0", "wisp_agent_link_connected == == 0", "check"},
		{"bad duration", alertRules, "for: 5m", "for: 5 minutes", "check"},
		{"alert fires late", alertRules, "expr: wisp_agent_link_connected == 0\n        for: 5m", "expr: wisp_agent_link_connected == 0\n        for: 10m", "test"},
		{"error ratio threshold", alertRules, ") > 0.05", ") > 0.5", "test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			r, ts := string(rules), string(tests)
			if !strings.Contains(r, tc.old) {
				t.Fatalf("%s no longer contains %q: update this case", tc.file, tc.old)
			}
			r = strings.Replace(r, tc.old, tc.new, 1)
			os.WriteFile(filepath.Join(tmp, filepath.Base(alertRules)), []byte(r), 0o644)
			os.WriteFile(filepath.Join(tmp, filepath.Base(alertRuleTests)), []byte(ts), 0o644)
			args := []string{"check", "rules", filepath.Base(alertRules)}
			if tc.cmd == "test" {
				args = []string{"test", "rules", filepath.Base(alertRuleTests)}
			}
			if out, err := run(tmp, args...); err == nil {
				t.Errorf("promtool %s accepted the broken copy:\n%s", strings.Join(args, " "), out)
			}
		})
	}
}

// TestDashboardAndAlertMetricsExist starts the real controller and agent,
// invokes a function twice, scrapes both /metrics and checks that every
// metric the Grafana dashboard and the alert rules query is one of them
// (a histogram's _bucket, _sum and _count included). It also checks that
// the per-function series count the two calls.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	broker := testenv.Mosquitto(t) // the agent's trigger metrics exist once it has a broker
	used, err := queriedMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the dashboard and rules: %v", len(used), used)
	}

	ctlDir := t.TempDir()
	ctl := startProc(t, "wisp-controller", nativeBin("wisp-controller"), "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0",
		"--data-dir", ctlDir, "--tls", "off", "--metrics-addr", "127.0.0.1:0")
	api := "http://" + ctl.Await(`msg="REST API listening" addr=(\S+)`)
	quic := ctl.Await(`msg="QUIC listening" addr=(\S+)`)
	ctlMetrics := ctl.Await(`msg=metrics addr=(\S+)`)
	admin, err := os.ReadFile(filepath.Join(ctlDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := client{url: api, token: strings.TrimSpace(string(admin))}
	out, err := exec.Command(nativeBin("wisp-controller"), "token", "create", "--data-dir", ctlDir, "--url", api).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	agent := startProc(t, "wisp-agent", nativeBin("wisp-agent"), "run", "--controllers", quic, "--join-token", strings.TrimSpace(string(out)),
		"--data-dir", t.TempDir(), "--agent-name", "edge", "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0",
		"--mqtt-broker", "tcp://"+broker)
	agentMetrics := agent.Await(`msg=metrics addr=(\S+)`)

	code, err := os.ReadFile(filepath.Join(repo, "testdata", "wasm", "hello_c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	body, ct := testhttp.Multipart(map[string]string{"name": "hello"}, "code", "hello_c.wasm", code)
	if status, b := c.do(t, "POST", "/v1/fn/_", body, ct); status != 201 {
		t.Fatalf("upload hello: %d %s", status, b)
	}
	var calls int
	testwait.For(t, 30*time.Second, "two invocations through the agent", func() bool {
		if status, _ := c.do(t, "POST", "/v1/fn/_/hello", strings.NewReader(`{"args":{"name":"Ada"}}`), "application/json"); status == 200 {
			calls++
		}
		return calls == 2
	})

	exported := map[string]bool{}
	var ctlText, agentText string
	// The agent's trigger metrics appear once it has joined and reached its broker.
	testwait.For(t, 30*time.Second, "both /metrics", func() bool {
		ctlText, agentText = scrape(t, ctlMetrics), scrape(t, agentMetrics)
		return strings.Contains(agentText, "wisp_agent_trigger_connected 1") && strings.Contains(agentText, `wisp_agent_link_connected{controller="`+quic+`"} 1`)
	})
	for _, text := range []string{ctlText, agentText} {
		for n := range exportedNames(text) {
			exported[n] = true
		}
	}
	var missing []string
	for _, n := range used {
		if !exported[n] && !prometheusOwn[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the dashboard or the alert rules query metrics neither binary exports: %v", missing)
	}
	if !strings.Contains(ctlText, `wisp_controller_function_invocations_total{function="hello",module="_",result="ok"} 2`) {
		t.Errorf("the controller's /metrics does not count the two calls of _/hello:\n%s", grepLines(ctlText, "wisp_controller_function_invocations_total"))
	}
	// Every attempt has a duration, the ones refused before the agent
	// joined (503) too: the count is the sum over results.
	attempts := 0.0
	for _, l := range strings.Split(grepLines(ctlText, `wisp_controller_function_invocations_total{function="hello",module="_",`), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			n, _ := strconv.ParseFloat(f[1], 64)
			attempts += n
		}
	}
	if want := fmt.Sprintf(`wisp_controller_function_duration_seconds_count{function="hello",module="_"} %g`, attempts); attempts < 2 || !strings.Contains(ctlText, want) {
		t.Errorf("the controller's /metrics has no duration for each of the %g calls of _/hello:\n%s", attempts, grepLines(ctlText, "wisp_controller_function_"))
	}
}

// TestMetricNamesOfQueries: what queriedMetrics finds in an expression,
// including names it must report as missing.
func TestMetricNamesOfQueries(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (module, function) (rate(wisp_controller_function_invocations_total{result!="ok",module=~"$module"}[$__rate_interval]))`,
			[]string{"wisp_controller_function_invocations_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(wisp_x_seconds_bucket[5m]))) > 1/60 and on (instance) up{job="a b"} == 0`,
			[]string{"up", "wisp_x_seconds_bucket"}},
		{`label_values(wisp_nonexistent_total{module=~"$module"}, function)`, []string{"wisp_nonexistent_total"}},
		{`wisp_a < max_over_time(wisp_b[1h]) offset 5m unless ignoring(x) group_left(y) wisp_c`, []string{"wisp_a", "wisp_b", "wisp_c"}},
		{`sum(x) without (instance) / count(y)`, []string{"x", "y"}},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
	names := exportedNames("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE c counter\nc_total 1\n# TYPE s summary\n")
	for _, n := range []string{"h_bucket", "h_sum", "h_count", "c_total", "s_sum", "s_count", "s"} {
		if !names[n] {
			t.Errorf("exportedNames misses %s: %v", n, names)
		}
	}
	if names["h"] {
		t.Error("exportedNames lists a histogram's bare name")
	}
}

// queriedMetrics is every metric name the dashboard's and the alert
// rules' expressions use, sorted.
func queriedMetrics() ([]string, error) {
	var exprs []string
	b, err := os.ReadFile(filepath.Join(repo, dashboard))
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", dashboard, err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			json.Unmarshal(v.Query, &q.Query) // older dashboards: a plain string
		}
		exprs = append(exprs, q.Query)
	}
	if b, err = os.ReadFile(filepath.Join(repo, alertRules)); err != nil {
		return nil, err
	}
	var r struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", alertRules, err)
	}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			exprs = append(exprs, rule.Expr)
		}
	}
	seen := map[string]bool{}
	for _, e := range exprs {
		if strings.TrimSpace(e) == "" {
			return nil, fmt.Errorf("an empty expression in the dashboard or the rules")
		}
		for _, n := range metricNames(e) {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
	grafanaLabels = regexp.MustCompile(`label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)[^,]*,[^)]*\)`)
)

// metricNames lists, sorted and once each, the metric names a PromQL
// expression (or a Grafana label_values query) selects: identifiers that
// are neither functions, keywords, label names, strings, durations nor
// numbers.
func metricNames(expr string) []string {
	expr = grafanaLabels.ReplaceAllString(expr, "$1")
	expr = promStrings.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promGrouping.ReplaceAllString(expr, " ")
	seen := map[string]bool{}
	for _, loc := range promIdent.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9' || expr[loc[0]-1] == '.' || expr[loc[0]-1] == '$') {
			continue // 1e6, 5m, $var
		}
		rest := strings.TrimLeft(expr[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue
		}
		seen[name] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// exportedNames reads the Prometheus text format and returns every series
// name it can have: each sample's name, and for each declared histogram
// or summary its _bucket, _sum and _count (present even with no sample).
func exportedNames(text string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			switch f[3] {
			case "histogram":
				names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
			case "summary":
				names[f[2]], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
			default:
				names[f[2]] = true
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %d %v", addr, resp.StatusCode, err)
	}
	return string(b)
}

func grepLines(text, substr string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
