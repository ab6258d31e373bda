package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testenv"
	"github.com/wispfn/wisp/internal/testnet"
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
	time.Sleep(500 * time.Millisecond) // a duplicate would show now
	if n := couchCount(t, couch, db); n != before+during {
		t.Fatalf("CouchDB holds %d documents, want %d exactly", n, before+during)
	}
	t.Logf("sink down %v; all %d results arrived %v after it came back", outage, before+during, time.Since(back).Round(time.Millisecond))
}
