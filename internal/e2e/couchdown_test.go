package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testnet"
)

// TestCouchDBDownWhileResultsFlow: the sink's server goes away while
// invocations keep producing results; when it is back every result
// arrives, once. WISP_E2E_FULL=1 makes the outage 20 s (default 5 s).
func TestCouchDBDownWhileResultsFlow(t *testing.T) {
	couch := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	testenv.TCP(t, "CouchDB (pouchdb-server)", strings.TrimPrefix(couch, "http://"), "run make services")
	outage := 5 * time.Second
	if os.Getenv("WISP_E2E_FULL") == "1" {
		outage = 20 * time.Second
	}
	proxy := testnet.NewTCPProxy(t, strings.TrimPrefix(couch, "http://"))
	db := fmt.Sprintf("wisp_down_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", couch+"/"+db, nil)
		http.DefaultClient.Do(req)
	})

	c := startController(t, t.TempDir(), "", "127.0.0.1:0")
	startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir())
	c.upload(t, "_", "hello", "hello_c", map[string]string{
		"sinks":            fmt.Sprintf(`[{"type":"couchdb","params":{"url":"http://%s/%s"}}]`, proxy.Addr(), db),
		"wait_for_workers": "true",
	})
	invoke := func(i int) {
		if status, body := c.invoke(t, "_", "hello", fmt.Sprintf(`{"args":{"name":"R%d"}}`, i)); status != 200 {
			t.Fatalf("invoke %d: %d %s", i, status, body)
		}
	}
	const before, during = 20, 100
	for i := range before {
		invoke(i)
	}
	waitFor(t, "the first results in CouchDB", func() bool { return couchCount(t, couch, db) == before })

	proxy.Stop()
	down := time.Now()
	for i := before; i < before+during; i++ {
		invoke(i)
		time.Sleep(outage / 2 / during)
	}
	time.Sleep(time.Until(down.Add(outage)))
	if n := couchCount(t, couch, db); n != before {
		t.Fatalf("documents arrived while the sink was down: %d", n)
	}
	if err := proxy.Start(); err != nil {
		t.Fatalf("restarting the proxy on %s: %v", proxy.Addr(), err)
	}
	back := time.Now()
	deadline := back.Add(90 * time.Second)
	for couchCount(t, couch, db) < before+during && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing more can be written once every activation's delivery is made
	// (a document already stored answers "conflict") and the controller
	// holds no other activation that could bring another document.
	waitFor(t, "every delivery made", func() bool {
		made := 0
		for _, r := range []string{"ok", "conflict"} {
			n, _ := strconv.Atoi(c.metric(t, `wisp_sink_deliveries_total{result="`+r+`"}`))
			made += n
		}
		return made >= before+during && c.metric(t, "wisp_sink_in_flight") == "0"
	})
	if n := len(listActivations(t, c, "hello")); n != before+during {
		t.Fatalf("the controller recorded %d activations, want %d", n, before+during)
	}
	if n := couchCount(t, couch, db); n != before+during {
		t.Fatalf("CouchDB holds %d documents, want %d exactly", n, before+during)
	}
	t.Logf("sink down %v; all %d results arrived %v after it came back", outage, before+during, time.Since(back).Round(time.Millisecond))
}
