package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testnet"
)

// bigText returns n characters of random base64 text starting with tag:
// the value of the "s" argument echo_c returns whole. Postgres's TOAST
// compression hardly shrinks it.
func bigText(tag string, n int) string {
	raw := make([]byte, n*3/4+3)
	r := rand.NewChaCha8([32]byte{byte(len(tag)), 42})
	r.Read(raw)
	return (tag + base64.StdEncoding.EncodeToString(raw))[:n]
}

// bigOutput is the size of the text each large invocation echoes: the
// agent's input limit is 1 MiB, for the args `{"s":"..."}` whole.
const bigOutput = 1<<20 - 64

// invokeBig invokes fn with {"s": text} and checks that the REST caller
// got the whole text back.
func (c *controller) invokeBig(t *testing.T, fn, text string) {
	t.Helper()
	status, body := c.invoke(t, "_", fn, `{"args":{"s":"`+text+`"}}`)
	var out struct {
		Data struct{ S string }
	}
	if status != 200 || json.Unmarshal([]byte(body), &out) != nil || out.Data.S != text {
		if len(body) > 300 {
			body = body[:300] + "..."
		}
		t.Fatalf("invoke %s with %d bytes: %d, %d bytes back, want the whole text: %s", fn, len(text), status, len(out.Data.S), body)
	}
}

// retainedActivation is what this test reads of GET /v1/activations.
type retainedActivation struct {
	ID        string          `json:"id"`
	Function  string          `json:"function"`
	Output    json.RawMessage `json:"output"`
	Truncated bool            `json:"truncated"`
}

func (c *controller) activations(t *testing.T, fn string) []retainedActivation {
	t.Helper()
	var all []retainedActivation
	after := ""
	for {
		status, b := c.do(t, "GET", "/v1/activations?order=oldest&function="+fn+"&limit=1000&after="+after, nil, "")
		if status != 200 {
			t.Fatalf("list activations: %d %s", status, b)
		}
		var env struct{ Data []retainedActivation }
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		all = append(all, env.Data...)
		if len(env.Data) < 1000 {
			return all
		}
		after = env.Data[len(env.Data)-1].ID
	}
}

// controllerMetric scrapes one value from the controller's /metrics.
func (c *controller) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := c.getMetrics()
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

// storeBytes measures the store from outside the controller, which must
// be stopped: for the embedded store the pages its buckets use (the file
// itself grows in steps of up to 16 MiB, and holds the pages freed for
// reuse) and the file's size; for Postgres the total relation size of the
// activation tables, twice.
func storeBytes(t *testing.T, dataDir, dsn string) (used, file int64) {
	t.Helper()
	if dsn == "" {
		path := filepath.Join(dataDir, "controller.db")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
				st := b.Stats()
				used += int64(st.BranchAlloc + st.LeafAlloc)
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return used, fi.Size()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('activations') + pg_total_relation_size('sink_deliveries')`).Scan(&used); err != nil {
		t.Fatal(err)
	}
	return used, used
}

// wantTruncatedPrefix checks that a GET of a stored activation shows it
// truncated, its output the beginning of `{"s":"<text>"}`.
func (c *controller) wantTruncatedPrefix(t *testing.T, id, text string, bound int) {
	t.Helper()
	status, b := c.do(t, "GET", "/v1/activations/"+id, nil, "")
	var env struct{ Data retainedActivation }
	if status != 200 || json.Unmarshal(b, &env) != nil {
		t.Fatalf("GET activation %s: %d", id, status)
	}
	var kept string
	if err := json.Unmarshal(env.Data.Output, &kept); err != nil || !env.Data.Truncated ||
		len(kept) > bound || len(kept) < bound-8 || !strings.HasPrefix(`{"s":"`+text+`"}`, kept) {
		t.Fatalf("activation %s: truncated %v, %d bytes kept (a prefix of the output: %v), want a marked prefix of ~%d",
			id, env.Data.Truncated, len(kept), strings.HasPrefix(`{"s":"`+text+`"}`, kept), bound)
	}
}

// TestActivationStorageBounded: on each store, a function returning ~1 MiB
// invoked 100 times grows the store by what 100 bounded records take, not
// by 100 MiB (measured against the same 100 calls with the bound lifted,
// in the same run); every caller gets the whole output; lowering the
// retention on restart removes the old records and keeps the newest
// readable.
func TestActivationStorageBounded(t *testing.T) {
	for _, storeKind := range []string{"embedded", "postgres"} {
		t.Run(storeKind, func(t *testing.T) {
			dsn := ""
			if storeKind == "postgres" {
				dsn = freshSchema(t)
			}
			testActivationStorageBounded(t, dsn)
		})
	}
}

func testActivationStorageBounded(t *testing.T, dsn string) {
	const calls = 100
	dir := t.TempDir()
	c := startController(t, dir, dsn, "127.0.0.1:0")
	quic := c.quic
	agent := startAgent(t, c, c.joinToken(t, dsn), "edge1", t.TempDir())
	c.upload(t, "_", "big", "echo_c", map[string]string{"wait_for_workers": "true"})
	// stop stops the controller and measures the store; restart starts it
	// again with flags and waits for the agent.
	stop := func() (used, file int64) {
		t.Helper()
		c.Stop()
		return storeBytes(t, dir, dsn)
	}
	restart := func(flags ...string) {
		t.Helper()
		c = startController(t, dir, dsn, quic, flags...)
		waitFor(t, "the agent back", func() bool { return len(c.connected(t)) == 1 })
	}
	var texts []string
	run := func(phase string) time.Duration {
		t.Helper()
		start := time.Now()
		for i := range calls {
			text := bigText(fmt.Sprintf("%s%03d", phase, i), bigOutput)
			texts = append(texts, text)
			c.invokeBig(t, "big", text)
		}
		return time.Since(start)
	}
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

	// Phase 1, the baseline: records keep whole outputs, as before bounds.
	used0, file0 := stop()
	restart("--activation-max-output-bytes", "64MiB")
	wholeTook := run("W")
	waitFor(t, "the records committed", func() bool { return len(c.activations(t, "big")) == calls })
	wholeList := c.activations(t, "big")
	if wholeList[0].Truncated {
		t.Fatal("with a 64 MiB bound, a 1 MiB output was truncated")
	}
	used1, file1 := stop()

	// Phase 2: the default bounds (64 KiB of output).
	restart()
	boundedTook := run("B")
	waitFor(t, "the records committed", func() bool { return len(c.activations(t, "big")) == 2*calls })
	list := c.activations(t, "big")
	for i, a := range list[calls:] {
		if i%25 == 0 || i == calls-1 {
			c.wantTruncatedPrefix(t, a.ID, texts[calls+i], 64<<10)
		}
	}
	if got := c.metric(t, `wisp_controller_activations_truncated_total{field="output"}`); got != fmt.Sprint(calls) {
		t.Errorf("truncated outputs counted: %q, want %d", got, calls)
	}
	used2, file2 := stop()
	whole, bounded := used1-used0, used2-used1
	t.Logf("store growth for %d calls returning %d bytes: %s with whole outputs (%v), %s with the default 64 KiB bound (%v): %.1fx less; file %s -> %s -> %s",
		calls, bigOutput+8, mib(whole), wholeTook.Round(time.Millisecond), mib(bounded), boundedTook.Round(time.Millisecond),
		float64(whole)/float64(max(bounded, 1)), mib(file0), mib(file1), mib(file2))
	if whole < calls*bigOutput*9/10 {
		t.Fatalf("the baseline grew the store by %d bytes only: the measurement does not see 100 MiB of outputs", whole)
	}
	// 100 records of 64 KiB are 6.25 MiB (8.3 MiB as the embedded store's
	// JSON); indexes, TOAST and page slack come on top.
	if limit := int64(calls*(64<<10)) * 2; bounded > limit {
		t.Fatalf("with the 64 KiB bound the store grew by %d bytes, more than %d", bounded, limit)
	}

	// Phase 3: a count bound of 10. The oldest 190 go at start, the newest
	// 10 are still readable; 100 more calls leave 10, and the room freed
	// is used again.
	restart("--activation-max-count", "10", "--activation-prune-interval", "1s")
	// Watched on the counter: a listing started before the pass returns
	// the 200 records with their 106 MiB of output, which a test binary
	// built with -race on a loaded machine took more than 30 s to decode.
	waitFor(t, "the oldest records pruned", func() bool {
		return c.metric(t, `wisp_controller_activations_pruned_total{reason="count"}`) == fmt.Sprint(2*calls-10)
	})
	left := c.activations(t, "big")
	if len(left) != 10 {
		t.Fatalf("%d records left, want the newest 10", len(left))
	}
	for i, a := range left {
		if a.ID != list[2*calls-10+i].ID {
			t.Fatalf("left %d: %s, want the newest %s", i, a.ID, list[2*calls-10+i].ID)
		}
		c.wantTruncatedPrefix(t, a.ID, texts[2*calls-10+i], 64<<10)
	}
	for _, a := range []retainedActivation{wholeList[0], list[calls]} {
		if status, _ := c.do(t, "GET", "/v1/activations/"+a.ID, nil, ""); status != 404 {
			t.Fatalf("a pruned activation answers %d", status)
		}
	}
	waitFor(t, "the prune counted", func() bool {
		return c.metric(t, `wisp_controller_activations_pruned_total{reason="count"}`) == "190" &&
			c.metric(t, `wisp_controller_activations_stored`) == "10"
	})
	run("R")
	waitFor(t, "10 records left after 100 more calls", func() bool {
		left := c.activations(t, "big")
		return len(left) == 10 && c.activations(t, "big")[9].ID > list[2*calls-1].ID &&
			c.metric(t, `wisp_controller_activations_pruned_total{reason="count"}`) == "290"
	})
	used3, file3 := stop()
	t.Logf("after pruning to 10 records and 100 more calls: store %s (was %s), file %s (was %s)",
		mib(used3), mib(used2), mib(file3), mib(file2))
	if limit := int64(calls*(64<<10)) * 2; used3-used2 > limit {
		t.Fatalf("pruned to 10 records, 100 more calls grew the store by %d bytes, more than %d", used3-used2, limit)
	}
	if dsn == "" && file3 > file2 {
		// Postgres reuses the room of deleted rows only after a VACUUM.
		t.Fatalf("bbolt did not reuse the pages of the pruned records: its file grew from %d to %d bytes", file2, file3)
	}

	// Phase 4: an age bound. The records made more than 2 s before the
	// restart go at start; a new one is kept and readable.
	time.Sleep(2 * time.Second)
	restart("--activation-retention", "2s", "--activation-prune-interval", "1h")
	waitFor(t, "the old records pruned by age", func() bool { return len(c.activations(t, "big")) == 0 })
	if got := c.metric(t, `wisp_controller_activations_pruned_total{reason="age"}`); got != "10" {
		t.Errorf("pruned by age: %q, want 10", got)
	}
	text := bigText("N", bigOutput)
	c.invokeBig(t, "big", text)
	waitFor(t, "the new record committed", func() bool { return len(c.activations(t, "big")) == 1 })
	c.wantTruncatedPrefix(t, c.activations(t, "big")[0].ID, text, 64<<10)

	select {
	case <-agent.Done():
		t.Fatal("the agent exited")
	default:
	}
}

// TestSinkGetsWholeOutputOfTruncatedRecord: the record of a ~1 MiB output
// is cut to 64 KiB, the CouchDB sink still gets all of it, and the count
// bound does not remove a record whose delivery waits for a sink that is
// down; it goes once delivered.
func TestSinkGetsWholeOutputOfTruncatedRecord(t *testing.T) {
	couch := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	testenv.TCP(t, "CouchDB (pouchdb-server)", strings.TrimPrefix(couch, "http://"), "run make services")
	proxy := testnet.NewTCPProxy(t, strings.TrimPrefix(couch, "http://"))
	db := fmt.Sprintf("wisp_whole_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", couch+"/"+db, nil)
		http.DefaultClient.Do(req)
	})
	c := startController(t, t.TempDir(), "", "127.0.0.1:0", "--activation-max-count", "1", "--activation-prune-interval", "200ms")
	startAgent(t, c, c.joinToken(t, ""), "edge1", t.TempDir())
	c.upload(t, "_", "bigsink", "echo_c", map[string]string{
		"sinks":            fmt.Sprintf(`[{"type":"couchdb","params":{"url":"http://%s/%s"}}]`, proxy.Addr(), db),
		"wait_for_workers": "true",
	})
	proxy.Stop()
	var texts []string
	for i := range 3 {
		texts = append(texts, bigText(fmt.Sprintf("S%d", i), bigOutput))
		c.invokeBig(t, "bigsink", texts[i])
	}
	// A prune pass while the sink is down keeps all three: the gauge is
	// set after each pass, from a count made after its removals, so it
	// reads 3 only once a pass saw the three records and removed none.
	waitFor(t, "a prune pass that kept the three records", func() bool {
		return c.metric(t, "wisp_controller_activations_stored") == "3"
	})
	held := c.activations(t, "bigsink")
	if len(held) != 3 {
		t.Fatalf("%d records while their deliveries wait, want all 3", len(held))
	}
	for i, a := range held {
		c.wantTruncatedPrefix(t, a.ID, texts[i], 64<<10)
	}
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the three documents in CouchDB", func() bool { return couchCount(t, couch, db) == 3 })
	for i, a := range held {
		resp, err := http.Get(couch + "/" + db + "/" + a.ID)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ S string }
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || doc.S != texts[i] {
			t.Fatalf("CouchDB document %s: %d bytes of s (%v), want the whole %d", a.ID, len(doc.S), err, len(texts[i]))
		}
	}
	// Delivered, the two older records go; the newest stays.
	waitFor(t, "the delivered records pruned", func() bool {
		left := c.activations(t, "bigsink")
		return len(left) == 1 && left[0].ID == held[2].ID
	})
}

// TestOutboxAndEventRecordsBounded: the records of an agent's local
// invocation (replayed from its outbox) and of a cloud MQTT event are
// bounded too, while the local caller gets the whole output.
func TestOutboxAndEventRecordsBounded(t *testing.T) {
	testenv.Mosquitto(t)
	c := startController(t, t.TempDir(), "", "127.0.0.1:0", "--activation-max-output-bytes", "4KiB")
	agentDir := t.TempDir()
	agent := startAgent(t, c, c.joinToken(t, ""), "edge1", agentDir)
	localURL := agent.Await(`msg="local invoke API" addr=(\S+)`)
	localToken := readToken(t, filepath.Join(agentDir, "local.token"))
	topic := "wisp/bounded/" + testenv.Unique()
	c.upload(t, "_", "echo", "echo_c", map[string]string{
		"events":           fmt.Sprintf(`[{"type":"mqtt","params":{"host":"127.0.0.1","port":1883,"topic":%q}}]`, topic),
		"wait_for_workers": "true",
	})
	local, event := bigText("L", 20_000), bigText("M", 20_000)
	waitFor(t, "the local call answered whole", func() bool {
		status, body := localInvoke(t, localURL, localToken, "echo", `{"args":{"s":"`+local+`"}}`)
		return status == 200 && strings.Contains(body, local)
	})
	pub := mqttClient(t)
	bySource := map[string]retainedActivation{}
	waitFor(t, "the local and the event records", func() bool {
		if _, ok := bySource["mqtt"]; !ok {
			pub.Publish(topic, 1, false, `{"s":"`+event+`"}`).WaitTimeout(5 * time.Second)
		}
		status, b := c.do(t, "GET", "/v1/activations?function=echo", nil, "")
		var env struct {
			Data []struct {
				retainedActivation
				Source string `json:"source"`
			}
		}
		if status != 200 || json.Unmarshal(b, &env) != nil {
			return false
		}
		for _, a := range env.Data {
			bySource[a.Source] = a.retainedActivation
		}
		_, okLocal := bySource["local-api"]
		_, okEvent := bySource["mqtt"]
		return okLocal && okEvent
	})
	c.wantTruncatedPrefix(t, bySource["local-api"].ID, local, 4<<10)
	c.wantTruncatedPrefix(t, bySource["mqtt"].ID, event, 4<<10)
}
