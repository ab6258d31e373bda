package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testnet"
)

// TestPartition: the agent's link to the controller is cut silently (a UDP
// relay that drops everything). During the cut, MQTT messages arrive on
// the agent's edge-local trigger and local callers use its invoke API; the
// agent is killed -9 and restarted in the middle. After the heal every
// result is in the controller's activation list exactly once and, when a
// CouchDB-compatible server is there, in the function's sink exactly once.
//
// Default size is CI-friendly; WISP_E2E_FULL=1 runs the full size
// (30 s cut, 5,000 messages, 500 local calls).
func TestPartition(t *testing.T) {
	testenv.Mosquitto(t)
	cut, messages, calls := 6*time.Second, 1000, 100
	if os.Getenv("WISP_E2E_FULL") == "1" {
		cut, messages, calls = 30*time.Second, 5000, 500
	}
	couch := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	haveCouch := reachable(couch)
	if !haveCouch && testenv.Required() {
		t.Fatalf("CouchDB-compatible server required at %s (run make services)", couch)
	}

	ctlDir, edgeDir := t.TempDir(), t.TempDir()
	c := startController(t, ctlDir, "", "127.0.0.1:0")
	relay := testnet.NewUDPRelay(t, c.quic)
	token := c.joinToken(t, "")
	edge := startEdgeAgent(t, relay.Addr(), token, edgeDir)
	localURL := edge.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(edgeDir, "local.token"))
	// The MQTT session must be up before the function arrives: only then is
	// "local triggers synced" logged after the broker's SUBACK. Otherwise
	// it can precede the subscription and the first messages are lost.
	edge.Await(`triggers: connected to the MQTT broker`)

	tag := testenv.Unique()
	topic := "wisp/partition/" + tag
	fields := map[string]string{
		"events":           fmt.Sprintf(`[{"type":"mqtt","params":{"topic":%q,"local":true}}]`, topic),
		"wait_for_workers": "true",
	}
	db := "wisp_partition_" + tag
	if haveCouch {
		fields["sinks"] = fmt.Sprintf(`[{"type":"couchdb","params":{"url":%q}}]`, couch+"/"+db)
		t.Cleanup(func() {
			req, _ := http.NewRequest("DELETE", couch+"/"+db, nil)
			http.DefaultClient.Do(req)
		})
	}
	c.upload(t, "_", "hello", "hello_c", fields)
	waitFor(t, "the function on the agent", func() bool {
		status, _ := localInvoke(t, localURL, localToken, "hello", `{"args":{"name":"warm"}}`)
		return status == 200
	})
	edge.Await(`msg="local triggers synced" bindings=1`)

	metricsAddr := edge.Await(`msg=metrics addr=(\S+)`)
	appends := func() int {
		n, _ := strconv.Atoi(metric(t, metricsAddr, "wisp_agent_outbox_appends_total"))
		return n
	}
	before := appends()

	relay.Cut.Store(true)
	cutStart := time.Now()
	pub := mqttClient(t)
	var wg sync.WaitGroup
	var lat []time.Duration
	var latMu sync.Mutex
	errs := make(chan error, 16)
	// The kill waits for a moment when the agent runs nothing: code that is
	// running when the agent dies is quarantined when it restarts (the
	// agent cannot tell an operator's kill -9 from the OOM kill a guest
	// caused), which is not what this test is about. The publisher pauses
	// under pubMu meanwhile.
	var pubMu sync.Mutex
	var published atomic.Int64
	wg.Add(2)
	go func() { // MQTT messages, spread over the cut
		defer wg.Done()
		for i := range messages {
			pubMu.Lock()
			tok := pub.Publish(topic, 1, false, fmt.Sprintf(`{"name":"M%d"}`, i))
			ok := tok.WaitTimeout(10*time.Second) && tok.Error() == nil
			published.Add(1)
			pubMu.Unlock()
			if !ok {
				errs <- fmt.Errorf("publish %d: %v", i, tok.Error())
				return
			}
			time.Sleep(cut / 2 / time.Duration(messages))
		}
	}()
	go func() { // local calls; the agent is killed -9 and restarted halfway
		defer wg.Done()
		url := localURL
		for i := range calls {
			if i == calls/2 {
				pubMu.Lock()
				want := before + i + int(published.Load())
				waitFor(t, "the agent to have run everything sent so far", func() bool {
					return appends() >= want && metric(t, metricsAddr, "wisp_agent_invocations_in_flight") == "0"
				})
				edge.Kill()
				edge = startEdgeAgentOffline(t, relay.Addr(), edgeDir)
				url = edge.Await(`msg="local invoke API" addr=(\S+)`)
				pubMu.Unlock()
			}
			t0 := time.Now()
			status, body := localInvoke(t, url, localToken, "hello", fmt.Sprintf(`{"args":{"name":"L%d"}}`, i))
			if status != 200 {
				errs <- fmt.Errorf("local call %d during the cut: %d %s", i, status, body)
				return
			}
			latMu.Lock()
			lat = append(lat, time.Since(t0))
			latMu.Unlock()
			time.Sleep(cut / 2 / time.Duration(calls))
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if rest := cut - time.Since(cutStart); rest > 0 {
		time.Sleep(rest) // the cut lasts its full length
	}
	relay.Cut.Store(false)
	healed := time.Now()

	want := 1 + calls + messages
	var got []activation
	for time.Since(healed) < 60*time.Second {
		if got = listActivations(t, c, "hello"); len(got) >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	recordedIn := time.Since(healed)
	// Only the outbox replays, and the controller acknowledges what it
	// recorded: once the agent's outbox is empty no late duplicate can
	// come, so the list checked is the final one.
	edgeMetrics := edge.Await(`msg=metrics addr=(\S+)`)
	waitFor(t, "the agent's outbox to drain", func() bool {
		return metric(t, edgeMetrics, "wisp_agent_outbox_entries") == "0"
	})
	got = listActivations(t, c, "hello")
	checkActivations(t, got, calls, messages)
	t.Logf("cut %v; %d messages + %d local calls; all %d recorded %v after the heal", cut, messages, calls, len(got), recordedIn.Round(time.Millisecond))
	if recordedIn > 10*time.Second {
		// A figure, not a pass/fail: a slow machine must not fail the test
		// (docs/benchmarks.md has the measured figures).
		t.Logf("NOTE: activations took %v after the heal; the target is 10s", recordedIn)
	}
	slices.Sort(lat)
	t.Logf("local API latency during the cut: p50 %v p99 %v (fsync'd outbox append included)", lat[len(lat)/2], lat[len(lat)*99/100])

	if haveCouch {
		var docs int
		for time.Since(healed) < 60*time.Second {
			if docs = couchCount(t, couch, db); docs >= len(got) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		inCouch := time.Since(healed)
		t.Logf("all %d documents in CouchDB %v after the heal", docs, inCouch.Round(time.Millisecond))
		// Every activation's delivery made (a document already stored
		// answers "conflict"): no document can come after this count.
		waitFor(t, "every delivery made", func() bool {
			made := 0
			for _, r := range []string{"ok", "conflict"} {
				n, _ := strconv.Atoi(c.metric(t, `wisp_sink_deliveries_total{result="`+r+`"}`))
				made += n
			}
			return made >= len(got) && c.metric(t, "wisp_sink_in_flight") == "0"
		})
		docs = couchCount(t, couch, db)
		if docs != len(got) {
			t.Fatalf("CouchDB holds %d documents for %d activations", docs, len(got))
		}
		if inCouch > 10*time.Second {
			t.Logf("NOTE: sink delivery took %v after the heal; the target is 10s", inCouch)
		}
	}
}

func checkActivations(t *testing.T, got []activation, calls, messages int) {
	t.Helper()
	seen := map[string]bool{}
	names := map[string]int{}
	for _, a := range got {
		if seen[a.ID] {
			t.Fatalf("activation %s recorded twice", a.ID)
		}
		seen[a.ID] = true
		var out struct{ Payload string }
		json.Unmarshal(a.Output, &out)
		names[out.Payload]++
	}
	for i := range calls {
		if n := names[fmt.Sprintf("Hello L%d!", i)]; n != 1 {
			t.Errorf("local call %d recorded %d times", i, n)
		}
	}
	for i := range messages {
		if n := names[fmt.Sprintf("Hello M%d!", i)]; n != 1 {
			t.Errorf("message %d recorded %d times", i, n)
		}
	}
}

func reachable(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func couchCount(t *testing.T, base, db string) int {
	resp, err := http.Get(base + "/" + db)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var info struct {
		DocCount int `json:"doc_count"`
	}
	json.NewDecoder(resp.Body).Decode(&info)
	return info.DocCount
}
