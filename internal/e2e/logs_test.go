package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
)

// TestFunctionLogs: a function that logs two lines runs through REST,
// through the agent's local API during a partition and by an edge MQTT
// trigger during it; after the heal `wisp fn logs` shows every line once,
// in order per activation, each answer named its activation, `--follow`
// shows a new invocation's lines within a second, and a log flood is cut at
// the bound with a marker while both processes stay within their memory
// bounds.
func TestFunctionLogs(t *testing.T) {
	testenv.Mosquitto(t)
	ctlDir, edgeDir := t.TempDir(), t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	edge := startEdgeAgent(t, c.quic, c.joinToken(t, ""), edgeDir)
	localURL := edge.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(edgeDir, "local.token"))
	metricsAddr := edge.Await(`msg=metrics addr=(\S+)`)

	topic := "wisp/e2e/logs/" + testenv.Unique()
	events := fmt.Sprintf(`[{"type":"mqtt","params":{"topic":%q,"local":true}}]`, topic)
	c.upload(t, "_", "logger", "log", map[string]string{"events": events, "wait_for_workers": "true"})
	c.upload(t, "_", "flood", "logflood", map[string]string{"wait_for_workers": "true"})
	edge.Await(`msg="local triggers synced" bindings=1`)

	// Every answer names its activation; the envelope is FunLess's.
	ids := map[string]string{} // activation id -> path
	id, body := invokeID(t, c.url+"/v1/fn/_/logger", c.admin)
	if !strings.Contains(body, `"logged":2`) {
		t.Fatalf("REST answer %s", body)
	}
	ids[id] = "rest"

	// Partition: the controller goes away; the local API and the trigger
	// keep running the function, and their activations wait in the outbox.
	quicAddr := c.quic
	c.Stop()
	const local, messages = 3, 3
	for range local {
		id, _ := invokeID(t, "http://"+localURL+"/v1/fn/_/logger", localToken)
		ids[id] = "local-api"
	}
	pub := mqttClient(t)
	for i := range messages {
		if tok := pub.Publish(topic, 1, false, fmt.Sprintf(`{"n":%d}`, i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	waitFor(t, "the outbox to hold every edge activation", func() bool {
		n, _ := strconv.Atoi(metric(t, metricsAddr, "wisp_agent_outbox_entries"))
		return n >= local+messages
	})

	// Heal.
	c = startController(t, ctlDir, "", quicAddr)
	waitFor(t, "the outbox to drain", func() bool { return metric(t, metricsAddr, "wisp_agent_outbox_entries") == "0" })

	want := 1 + local + messages
	var lines []logLine
	waitFor(t, fmt.Sprintf("the lines of %d activations", want), func() bool {
		lines = fnLogs(t, c, "logger", "--since", "10m")
		return len(lines) >= 2*want
	})
	byActivation := map[string][]string{}
	var order []string
	for _, l := range lines {
		if l.stream != "console" {
			t.Fatalf("line %+v: stream %q, want console", l, l.stream)
		}
		if _, ok := byActivation[l.short]; !ok {
			order = append(order, l.short)
		}
		byActivation[l.short] = append(byActivation[l.short], l.text)
	}
	if len(byActivation) != want || len(lines) != 2*want {
		t.Fatalf("%d lines of %d activations, want %d of %d:\n%s", len(lines), len(byActivation), 2*want, want, fnLogsText(lines))
	}
	for short, texts := range byActivation {
		if strings.Join(texts, "|") != "first line|second line" {
			t.Errorf("activation %s: lines %q, want each line once, in order", short, texts)
		}
	}
	for id, path := range ids {
		if _, ok := byActivation[shortOf(id)]; !ok {
			t.Errorf("the %s activation %s is not in fn logs", path, id)
		}
	}
	// The lines of one activation come together, never interleaved with
	// another's (activations may overlap in time: order across them is the
	// activations', not the lines').
	for i := 1; i < len(lines); i++ {
		if lines[i].short != lines[i-1].short && slices.Contains(order[:slices.Index(order, lines[i-1].short)], lines[i].short) {
			t.Errorf("line %d of activation %s comes after another activation's lines:\n%s", i, lines[i].short, fnLogsText(lines))
		}
	}

	// Following: a new invocation's lines show within a second.
	follow := startEnv(t, "wisp fn logs --follow", cliEnv(t, c), "fn", "logs", "logger", "--follow", "--since", "1s")
	time.Sleep(300 * time.Millisecond) // the stream opens before history is read; give it the time to open
	t0 := time.Now()
	id, _ = invokeID(t, c.url+"/v1/fn/_/logger", c.admin)
	follow.Await(regexp.QuoteMeta(shortOf(id)) + `\s+console\s+second line`)
	if took := time.Since(t0); took > time.Second {
		t.Errorf("--follow showed the new activation's lines %v after the invocation began, want within 1s", took)
	} else {
		t.Logf("--follow showed the new activation's lines %v after the invocation began", took)
	}

	// A flood (100,000 lines of 100 bytes) is kept to the bound, and the
	// marker says so.
	id, body = invokeID(t, c.url+"/v1/fn/_/flood", c.admin)
	if body != `{"data":{}}` {
		t.Fatalf("flood answer %s", body)
	}
	var rec struct {
		Data struct {
			Logs []struct{ Stream, Text string }
		}
	}
	waitFor(t, "the flood's record", func() bool {
		status, b := c.do(t, "GET", "/v1/activations/"+id, nil, "")
		return status == 200 && json.Unmarshal(b, &rec) == nil
	})
	logs := rec.Data.Logs
	if len(logs) != 101 || logs[0].Stream != "console" || logs[100].Stream != "wisp" || !strings.Contains(logs[100].Text, "dropped") {
		last := ""
		if len(logs) > 0 {
			last = logs[len(logs)-1].Stream + ": " + logs[len(logs)-1].Text
		}
		t.Fatalf("flood kept %d lines (last %q), want the 100-line bound and a marker", len(logs), last)
	}
	t.Logf("flood marker: %s", logs[100].Text)
	if peak := procPeakRSS(c.Cmd.Process.Pid); peak == 0 || peak > hostileControllerPeak {
		t.Errorf("controller peak RSS %d MiB, bound %d MiB", peak>>20, hostileControllerPeak>>20)
	}
	if peak := procPeakRSS(edge.Cmd.Process.Pid); peak == 0 || peak > hostileAgentPeak {
		t.Errorf("agent peak RSS %d MiB, bound %d MiB", peak>>20, hostileAgentPeak>>20)
	}
	// Both still serve.
	if _, body := invokeID(t, c.url+"/v1/fn/_/logger", c.admin); !strings.Contains(body, `"logged":2`) {
		t.Fatalf("after the flood: %s", body)
	}
}

// invokeID POSTs an invocation and returns the activation id its answer
// names (X-Wisp-Activation-Id) and its body; it fails the test unless the
// answer is 200 with an id.
func invokeID(t *testing.T, url, token string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"args":{}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	id := resp.Header.Get("X-Wisp-Activation-Id")
	if resp.StatusCode != 200 || len(id) != 26 {
		t.Fatalf("POST %s: %d, activation %q, %s", url, resp.StatusCode, id, b)
	}
	return id, string(b)
}

// logLine is one line of `wisp fn logs`: time, short activation id,
// stream, text.
type logLine struct{ time, short, stream, text string }

var logLineRE = regexp.MustCompile(`^(\S+)\s+(\S+)\s+(\S+)\s+(.*)$`)

// fnLogs runs `wisp fn logs FN args...` and parses what it prints.
func fnLogs(t *testing.T, c *controller, fn string, args ...string) []logLine {
	t.Helper()
	p := startEnv(t, "wisp fn logs", cliEnv(t, c), append([]string{"fn", "logs", fn}, args...)...)
	<-p.Done()
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("wisp fn logs: exit %d\n%s", code, p.Log())
	}
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	for sc.Scan() {
		m := logLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("wisp fn logs printed %q", sc.Text())
		}
		out = append(out, logLine{m[1], m[2], m[3], m[4]})
	}
	return out
}

func fnLogsText(lines []logLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s %s %s\n", l.time, l.short, l.stream, l.text)
	}
	return b.String()
}

// cliEnv points the wisp CLI at c with the admin token.
func cliEnv(t *testing.T, c *controller) []string {
	return []string{"WISP_HOST=" + c.url, "WISP_TOKEN=" + c.admin, "XDG_CONFIG_HOME=" + t.TempDir()}
}

// shortOf is how the CLI shortens an activation id (its last 8 characters).
func shortOf(id string) string { return id[len(id)-8:] }
