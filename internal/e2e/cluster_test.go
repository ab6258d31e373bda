package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/failover"
	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// cluster is controllers sharing one Postgres schema (issue 15), each with
// a data dir of its own, on REST and QUIC addresses kept across restarts.
type cluster struct {
	key    string // WISP_SECRETS_KEY of every controller
	dsn    string
	ctls   []*controller
	dirs   []string
	ids    []string // each controller's --controller-id, new at each start
	extra  []string // flags of every controller
	starts int
}

// nextID is a controller id never used before in this cluster (ids name
// controllers in leases and agent links: a restarted controller is
// another instance).
func (cl *cluster) nextID(i int) string {
	cl.starts++
	return fmt.Sprintf("ctl%d-%d", i, cl.starts)
}

// sharedFiles are data-dir files the controllers of a cluster must share
// when the first one made them: the TLS and QUIC identity, until it lives
// in the store (join tokens and pinned CLIs carry its key's fingerprint),
// and the admin token (the admin subject is in the store; the file is only
// where the tests read it). The secrets key is shared as
// WISP_SECRETS_KEY, as docs/cluster.md says.
var sharedFiles = []string{"controller.crt", "controller.key", "admin.token"}

// startCluster starts n controllers on a fresh Postgres schema with one
// secrets key: the first makes the identity and the admin, the others
// start with copies of what it left in its data dir.
func startCluster(t testing.TB, n int, extra ...string) *cluster {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	cl := &cluster{dsn: testpg.Schema(t, 0), key: base64.StdEncoding.EncodeToString(key), extra: extra}
	for i := range n {
		dir := t.TempDir()
		if i > 0 {
			for _, f := range sharedFiles {
				b, err := os.ReadFile(filepath.Join(cl.dirs[0], f))
				if errors.Is(err, fs.ErrNotExist) && f != "admin.token" {
					continue // the identity is in the store
				}
				if err != nil {
					t.Fatalf("controller %d: %v", i, err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		id := cl.nextID(i)
		cl.dirs, cl.ids = append(cl.dirs, dir), append(cl.ids, id)
		cl.ctls = append(cl.ctls, startControllerEnv(t, dir, cl.dsn, "127.0.0.1:0", cl.env(), append([]string{"--controller-id", id}, extra...)...))
	}
	return cl
}

// restart starts controller i again on its data dir and addresses (after
// it stopped or was killed).
func (cl *cluster) restart(t testing.TB, i int) *controller {
	t.Helper()
	old := cl.ctls[i]
	cl.ids[i] = cl.nextID(i)
	args := append([]string{"--listen", strings.TrimPrefix(old.url, "http://"), "--controller-id", cl.ids[i]}, cl.extra...)
	cl.ctls[i] = startControllerEnv(t, cl.dirs[i], cl.dsn, old.quic, cl.env(), args...)
	return cl.ctls[i]
}

// keepActivations turns the activation retention off: the load tests
// record tens of thousands of activations of one function, which the
// default bound (10,000 per function) would prune while the tests count
// them (and the pruning statement outlives a killed controller, holding
// the schema's drop).
var keepActivations = []string{"--activation-max-per-function", "0", "--activation-max-count", "0", "--activation-retention", "0"}

// env is the environment of the cluster's controllers and commands.
func (cl *cluster) env() []string { return []string{"WISP_SECRETS_KEY=" + cl.key} }

// joinToken makes a join token for uses agents through the first
// controller's data dir and the database (wisp-controller token create).
func (cl *cluster) joinToken(t testing.TB, uses int) string {
	t.Helper()
	c := cl.ctls[0]
	cmd := exec.Command(filepath.Join(bin, "wisp-controller"), "token", "create", "--uses", strconv.Itoa(uses),
		"--data-dir", c.dataDir, "--url", c.url, "--database-url", cl.dsn)
	cmd.Env = append(os.Environ(), cl.env()...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tok, "wispjoin1.") {
		t.Fatalf("token create printed %q", out)
	}
	return tok
}

// quicAddrs are the controllers' QUIC addresses, for an agent's --controllers.
func (cl *cluster) quicAddrs(idx ...int) []string {
	if len(idx) == 0 {
		for i := range cl.ctls {
			idx = append(idx, i)
		}
	}
	var out []string
	for _, i := range idx {
		out = append(out, cl.ctls[i].quic)
	}
	return out
}

func (cl *cluster) urls() []string {
	var out []string
	for _, c := range cl.ctls {
		out = append(out, c.url)
	}
	return out
}

// clusterAgent is an agent with links to some of a cluster's controllers.
type clusterAgent struct {
	*proc
	name, dir, api, token string
}

// startClusterAgent runs an agent dialling controllers (QUIC addresses)
// and waits until it has a session with each.
func startClusterAgent(t testing.TB, token, name string, controllers []string) *clusterAgent {
	t.Helper()
	dir := t.TempDir()
	p := startEnv(t, "wisp-agent "+name, tokenEnv(token), "run", "--controllers", strings.Join(controllers, ","),
		"--data-dir", dir, "--agent-name", name, "--metrics-addr", "127.0.0.1:0", "--local-api", "127.0.0.1:0")
	a := &clusterAgent{proc: p, name: name, dir: dir}
	a.api = p.Await(`msg="local invoke API" addr=(\S+)`)
	tok, err := os.ReadFile(filepath.Join(dir, "local.token"))
	if err != nil {
		t.Fatal(err)
	}
	a.token = strings.TrimSpace(string(tok))
	waitFor(t, name+" linked to "+strings.Join(controllers, ", "), func() bool {
		up := a.links(t)
		for _, c := range controllers {
			if !up[c].Connected {
				return false
			}
		}
		return true
	})
	return a
}

// status is the running agent's report (GET /v1/status on its local API).
func (a *clusterAgent) status(t testing.TB) status.Report {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.api+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s status: %v", a.name, err)
	}
	defer resp.Body.Close()
	var env struct{ Data status.Report }
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s status: %d %v", a.name, resp.StatusCode, err)
	}
	return env.Data
}

// links are the agent's links by the controller address it dialled.
func (a *clusterAgent) links(t testing.TB) map[string]status.Link {
	out := map[string]status.Link{}
	for _, l := range a.status(t).Links {
		out[l.Controller] = l
	}
	return out
}

// holds reports whether the agent's desired set names module/name.
func (a *clusterAgent) holds(t testing.TB, module, name string) bool {
	for _, f := range a.status(t).Desired {
		if f.Module == module && f.Name == name {
			return true
		}
	}
	return false
}

// clusterAgents is GET /v1/agents through c: each connected agent's name
// and the ids of the controllers it is linked to, joined by commas.
func clusterAgents(t testing.TB, c *controller) map[string]string {
	t.Helper()
	status, b := c.do(t, "GET", "/v1/agents", nil, "")
	if status != 200 {
		t.Fatalf("GET /v1/agents: %d %s", status, b)
	}
	var env struct {
		Data []struct {
			Name        string   `json:"name"`
			Connected   bool     `json:"connected"`
			Controllers []string `json:"controllers"`
		}
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range env.Data {
		if a.Connected {
			out[a.Name] = strings.Join(slices.Sorted(slices.Values(a.Controllers)), ",")
		}
	}
	return out
}

// call is one invocation made by a load client.
type call struct {
	client  int
	target  string // the controller addressed ("" through failover)
	host    string // the controller that answered
	start   time.Time
	elapsed time.Duration
	status  int
	id      string // X-Wisp-Activation-Id
	err     error
}

// load runs clients that invoke module/name in a loop until stop, each
// through the http.Client clientFor gives it, addressed to the URL
// targetOf gives it.
type load struct {
	mu    sync.Mutex
	calls []call
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startLoad(t *testing.T, clients int, admin, path string, clientFor func(i int) *http.Client, targetOf func(i int) string) *load {
	l := &load{stop: make(chan struct{})}
	for i := range clients {
		hc, target := clientFor(i), targetOf(i)
		l.wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-l.stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"args":{"name":"c%d_%d"}}`, i, j)
				req, _ := http.NewRequest("POST", target+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+admin)
				req.Header.Set("Content-Type", "application/json")
				c := call{client: i, target: target, start: time.Now()}
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					c.status, c.id, c.host = resp.StatusCode, resp.Header.Get("X-Wisp-Activation-Id"), failover.Host(resp)
				}
				c.err, c.elapsed = err, time.Since(c.start)
				l.mu.Lock()
				l.calls = append(l.calls, c)
				l.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // a dead controller: do not spin
				}
			}
		})
	}
	return l
}

// finish stops the clients and returns every call.
func (l *load) finish() []call {
	close(l.stop)
	l.wg.Wait()
	return l.calls
}

// activationRows counts the activations of module/name in Postgres by id
// and source.
func activationRows(t *testing.T, dsn, module, name string) (ids map[string]int, bySource map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, source, count(*) OVER (PARTITION BY id) FROM activations WHERE module = $1 AND function = $2`, module, name)
	if err != nil {
		t.Fatal(err)
	}
	ids, bySource = map[string]int{}, map[string]int{}
	for rows.Next() {
		var id, source string
		var n int
		if err := rows.Scan(&id, &source, &n); err != nil {
			t.Fatal(err)
		}
		ids[id] = n
		bySource[source]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids, bySource
}

// TestClusterThreeControllers: three controllers on one Postgres, two
// agents, one linked to all three and one to the third only. A function
// created through the first is invoked through the second and the third;
// a change made through the first reaches the agent linked only to the
// third within 1 s (the change feed).
func TestClusterThreeControllers(t *testing.T) {
	cl := startCluster(t, 3)
	a, b, c := cl.ctls[0], cl.ctls[1], cl.ctls[2]
	token := cl.joinToken(t, 2)
	all := startClusterAgent(t, token, "all", cl.quicAddrs())
	onlyC := startClusterAgent(t, token, "onlyc", cl.quicAddrs(2))

	a.upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	for _, via := range []*controller{b, c} {
		for i := range 4 {
			if status, body := via.invoke(t, "_", "hello", fmt.Sprintf(`{"args":{"name":"n%d"}}`, i)); status != 200 || !strings.Contains(body, fmt.Sprintf("Hello n%d!", i)) {
				t.Fatalf("invoke through %s: %d %s", via.url, status, body)
			}
		}
	}
	waitFor(t, "hello in both agents' desired sets", func() bool {
		return all.holds(t, "_", "hello") && onlyC.holds(t, "_", "hello")
	})
	// Every controller lists both agents, each with the controllers it is
	// linked to.
	want := map[string]string{"all": strings.Join(slices.Sorted(slices.Values(cl.ids)), ","), "onlyc": cl.ids[2]}
	for _, via := range cl.ctls {
		var got map[string]string
		waitFor(t, "GET /v1/agents through "+via.url+" showing every agent's controllers", func() bool {
			got = clusterAgents(t, via)
			return maps.Equal(got, want)
		})
	}

	// A desired-set change made through a, seen by the agent linked to c
	// only: a new function, then its deletion.
	for _, step := range []struct {
		what string
		do   func()
		want bool
	}{
		{"created", func() { a.upload(t, "_", "hello2", "hello_c", nil) }, true},
		{"deleted", func() {
			if status, body := a.do(t, "DELETE", "/v1/fn/_/hello2", nil, ""); status != 200 && status != 204 {
				t.Fatalf("delete: %d %s", status, body)
			}
		}, false},
	} {
		t0 := time.Now()
		step.do()
		for onlyC.holds(t, "_", "hello2") != step.want {
			if time.Since(t0) > time.Second {
				t.Fatalf("hello2 %s through %s: not in the desired set of the agent linked to %s only after %v",
					step.what, a.url, c.url, time.Since(t0).Round(time.Millisecond))
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("hello2 %s through the first controller: the desired set of the agent of the third followed after %v", step.what, time.Since(t0).Round(time.Millisecond))
	}
}

// TestClusterKillOne: under load from 64 clients spread over three
// controllers, one controller is killed (kill -9): the agents keep their
// sessions with the other two, requests to the dead one fail at the client
// and every other one succeeds, no invocation is recorded twice, and the
// CouchDB sink results and cloud MQTT events keep flowing, each handled
// once, the dead controller's share taken over. Restarted, it rejoins and
// serves.
func TestClusterKillOne(t *testing.T) {
	couch := couchURL(t)
	testenv.Mosquitto(t)
	cl := startCluster(t, 3, keepActivations...)
	token := cl.joinToken(t, 2)
	agents := []*clusterAgent{
		startClusterAgent(t, token, "edge1", cl.quicAddrs()),
		startClusterAgent(t, token, "edge2", cl.quicAddrs()),
	}
	db := fmt.Sprintf("wisp_cluster_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", couch+"/"+db, nil)
		http.DefaultClient.Do(req)
	})
	topic := "wisp/cluster/" + db
	cl.ctls[0].upload(t, "_", "hello", "hello_c", map[string]string{
		"events":           fmt.Sprintf(`[{"type":"mqtt","params":{"host":"127.0.0.1","port":"1883","topic":%q}}]`, topic),
		"sinks":            fmt.Sprintf(`[{"type":"couchdb","params":{"url":"%s/%s"}}]`, couch, db),
		"wait_for_workers": "true",
	})

	// MQTT messages, 20 a second, each naming itself.
	pub := mqttClient(t)
	var published []string // the payload names the broker took
	var publishedAt []time.Time
	pubStop := make(chan struct{})
	var pubWG sync.WaitGroup
	pubWG.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-pubStop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if tok := pub.Publish(topic, 1, false, fmt.Sprintf(`{"name":"m%d"}`, i)); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				published = append(published, fmt.Sprintf("m%d", i))
				publishedAt = append(publishedAt, time.Now())
			}
		}
	})

	const clients = 64
	admin := cl.ctls[0].admin
	urls := cl.urls()
	plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	l := startLoad(t, clients, admin, "/v1/fn/_/hello",
		func(int) *http.Client { return plain },
		func(i int) string { return urls[i%3] })

	// Kill the controller that handles the MQTT messages (singleton work),
	// once it has handled some.
	victim := -1
	waitFor(t, "MQTT messages handled", func() bool {
		for i, c := range cl.ctls {
			if n := c.metric(t, `wisp_events_messages_total{result="invoked"}`); n != "" && n != "0" {
				victim = i
				return true
			}
		}
		return false
	})
	time.Sleep(2 * time.Second)
	dead := cl.ctls[victim]
	dead.Kill()
	killed := time.Now()
	t.Logf("killed controller %d (%s), which handled MQTT messages", victim, dead.url)
	time.Sleep(6 * time.Second)

	// The agents kept their sessions with the other two all along.
	for _, a := range agents {
		links := a.links(t)
		for i, c := range cl.ctls {
			if i == victim {
				continue
			}
			if l := links[c.quic]; !l.Connected || l.Since.After(killed.Add(-time.Second)) {
				t.Errorf("%s's link to controller %d: %+v; want up since before the kill", a.name, i, l)
			}
		}
	}
	calls := l.finish()
	close(pubStop)
	pubWG.Wait()
	// The cluster sees it too: the survivors list both agents linked to
	// the two of them (the dead controller's links go once it is found
	// dead).
	var survivors []string
	for i, id := range cl.ids {
		if i != victim {
			survivors = append(survivors, id)
		}
	}
	slices.Sort(survivors)
	alive := cl.ctls[(victim+1)%3]
	waitFor(t, "the survivors list the agents linked to the two of them", func() bool {
		return maps.Equal(clusterAgents(t, alive), map[string]string{"edge1": strings.Join(survivors, ","), "edge2": strings.Join(survivors, ",")})
	})

	// Requests to the dead controller fail at the client; every other one
	// succeeds.
	var ok, deadFailed, deadAnswered int
	answered := map[string]bool{}
	for _, c := range calls {
		switch {
		case c.target == dead.url && c.err != nil:
			deadFailed++
		case c.target == dead.url && c.start.After(killed):
			t.Errorf("a call to the dead controller after the kill was answered: %+v", c)
		case c.err != nil || c.status != 200:
			t.Errorf("call through %s at %v (kill at %v): %d %v", c.target, c.start.Format("15:04:05.000"), killed.Format("15:04:05.000"), c.status, c.err)
		default:
			ok++
			if c.target == dead.url {
				deadAnswered++
			}
			if c.id == "" || answered[c.id] {
				t.Errorf("answer with activation id %q (empty or seen twice)", c.id)
			}
			answered[c.id] = true
		}
	}
	if deadFailed == 0 {
		t.Error("no call to the dead controller failed")
	}
	t.Logf("%d calls: %d answered (%d by the victim before the kill), %d to the dead controller failed", len(calls), ok, deadAnswered, deadFailed)

	// The restarted controller rejoins: the agents link to it again, and
	// it serves.
	back := cl.restart(t, victim)
	waitFor(t, "the agents linked to the restarted controller", func() bool {
		for _, a := range agents {
			if !a.links(t)[back.quic].Connected {
				return false
			}
		}
		return true
	})
	waitFor(t, "the restarted controller serves", func() bool {
		status, _ := back.invoke(t, "_", "hello", `{"args":{"name":"back"}}`)
		return status == 200
	})

	// Every MQTT message published was handled, once; every activation
	// was recorded once and answered at most once, the REST ones being the
	// answers plus at most the calls in flight at the dead controller.
	var rows map[string]int
	var bySource map[string]int
	var handled map[string]int
	settle(15*time.Second, func() bool {
		rows, bySource = activationRows(t, cl.dsn, "_", "hello")
		handled = mqttHandled(t, cl.dsn, "_", "hello")
		return len(handled) >= len(published)
	})
	// Cloud events across a kill -9 (controller/events package doc): the
	// dead controller may lose messages it had taken (acknowledged and
	// handed to invocations) and the broker sends again those in flight
	// to it that it had not acknowledged, which the next holder runs
	// again. Both only for messages published before the kill, at most an
	// in-flight window of them (64 invocation slots; the broker's window is
	// 20); every message published after the kill runs exactly once.
	var lost, twice, wrongAfter []string
	for i, name := range published {
		n := handled[name]
		switch {
		case n == 1:
		case !publishedAt[i].Before(killed):
			wrongAfter = append(wrongAfter, fmt.Sprintf("%s×%d", name, n))
		case n == 0:
			lost = append(lost, name)
		default:
			twice = append(twice, fmt.Sprintf("%s×%d", name, n))
		}
	}
	if len(wrongAfter) > 0 || len(lost) > 64 || len(twice) > 20 {
		t.Errorf("of %d MQTT messages published, %d published after the kill did not run exactly once (%s); before it, %d were lost (%s) and %d ran more than once (%s)",
			len(published), len(wrongAfter), firstFew(wrongAfter), len(lost), firstFew(lost), len(twice), firstFew(twice))
	}
	if len(lost)+len(twice) > 0 {
		t.Logf("MQTT messages in flight at the kill: %d lost (%s), %d run twice (%s)", len(lost), firstFew(lost), len(twice), firstFew(twice))
	}
	for id, n := range rows {
		if n != 1 {
			t.Errorf("activation %s recorded %d times", id, n)
		}
	}
	for id := range answered {
		if rows[id] != 1 {
			t.Errorf("answered activation %s is not recorded", id)
		}
	}
	rest := len(rows) - bySource["mqtt"]
	if rest < ok+1 || rest > ok+1+deadFailed {
		t.Errorf("%d activations from REST calls; want the %d answered (+1 after the restart), plus at most the %d that failed at the dead controller", rest, ok, deadFailed)
	}
	// Every result reached CouchDB, once (a document per activation id).
	settle(30*time.Second, func() bool { return couchCount(t, couch, db) >= len(rows) })
	if n := couchCount(t, couch, db); n != len(rows) {
		t.Errorf("CouchDB holds %d documents for %d activations", n, len(rows))
	}
	t.Logf("%d MQTT messages, %d activations (%v), %d CouchDB documents", len(published), len(rows), bySource, couchCount(t, couch, db))
}

// settle polls cond every 200 ms until it holds or d has passed, and
// reports whether it held; the caller says what is wrong.
func settle(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// mqttHandled counts the cloud MQTT activations of module/name by the
// name their message carried (hello's output is {"payload":"Hello <name>!"}).
func mqttHandled(t testing.TB, dsn, module, name string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT output FROM activations WHERE module = $1 AND function = $2 AND source = 'mqtt'`, module, name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		var o struct{ Payload string }
		json.Unmarshal(b, &o)
		out[strings.TrimSuffix(strings.TrimPrefix(o.Payload, "Hello "), "!")]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// firstFew is the first ten of xs, for a message.
func firstFew(xs []string) string {
	if len(xs) > 10 {
		return strings.Join(xs[:10], " ") + " ..."
	}
	return strings.Join(xs, " ")
}

// TestClusterRollingRestart: the three controllers are restarted one at a
// time (SIGTERM, wait for the exit, start again, wait until the agents are
// back) under load from clients that move to another controller as the
// CLI does (internal/failover): no request fails.
func TestClusterRollingRestart(t *testing.T) {
	cl := startCluster(t, 3, keepActivations...)
	token := cl.joinToken(t, 2)
	agents := []*clusterAgent{
		startClusterAgent(t, token, "edge1", cl.quicAddrs()),
		startClusterAgent(t, token, "edge2", cl.quicAddrs()),
	}
	cl.ctls[0].upload(t, "_", "hello", "hello_c", map[string]string{"wait_for_workers": "true"})
	for _, c := range cl.ctls {
		if status, body := c.invoke(t, "_", "hello", `{"args":{"name":"warm"}}`); status != 200 {
			t.Fatalf("warm-up through %s: %d %s", c.url, status, body)
		}
	}

	const clients = 64
	urls := cl.urls()
	l := startLoad(t, clients, cl.ctls[0].admin, "/v1/fn/_/hello",
		func(int) *http.Client {
			tr, err := failover.New(urls, &http.Transport{MaxIdleConnsPerHost: 4})
			if err != nil {
				t.Fatal(err)
			}
			return &http.Client{Transport: tr, Timeout: 30 * time.Second}
		},
		func(int) string { return urls[0] })
	time.Sleep(time.Second)
	for i := range cl.ctls {
		t0 := time.Now()
		cl.ctls[i].Stop()
		stopped := time.Since(t0)
		c := cl.restart(t, i)
		waitFor(t, fmt.Sprintf("the agents linked to restarted controller %d", i), func() bool {
			for _, a := range agents {
				if !a.links(t)[c.quic].Connected {
					return false
				}
			}
			return true
		})
		t.Logf("controller %d (%s): SIGTERM at %s, stopped in %v, back with its agents after %v", i, c.url, t0.Format("15:04:05.000"), stopped.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	calls := l.finish()
	perHost := map[string]int{}
	var failed []call
	for _, c := range calls {
		if c.err != nil || c.status != 200 {
			failed = append(failed, c)
			continue
		}
		perHost[c.host]++
	}
	t.Logf("%d calls, %d failed; answered by %v", len(calls), len(failed), perHost)
	for i, c := range failed {
		if i == 10 {
			break
		}
		var fe *failover.Error
		t.Errorf("call at %s: %d %v (MayHaveRun %v)", c.start.Format("15:04:05.000"), c.status, c.err, errors.As(c.err, &fe) && fe.MayHaveRun)
	}
	if len(perHost) < 3 {
		t.Errorf("answers came from %d controllers, want all 3", len(perHost))
	}
	// Every answered call is recorded (activations are written in batches:
	// wait for the last), and nothing else is: no call ran twice.
	var ids map[string]int
	var missing []call
	deadline := time.Now().Add(15 * time.Second)
	for {
		ids, _ = activationRows(t, cl.dsn, "_", "hello")
		missing = missing[:0]
		for _, c := range calls {
			if c.err == nil && c.status == 200 && ids[c.id] == 0 {
				missing = append(missing, c)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d answered calls have no activation record; the first: %s at %s (id %s)", len(missing), missing[0].host, missing[0].start.Format("15:04:05.000"), missing[0].id)
	}
	if n := len(calls) - len(failed) + len(cl.ctls); len(ids) > n {
		t.Errorf("%d activations recorded for %d answered calls", len(ids), n)
	}
}

// couchURL is the CouchDB the sink tests write to, or skips.
func couchURL(t *testing.T) string {
	t.Helper()
	couch := testenv.Env("WISP_TEST_COUCHDB_URL", "http://127.0.0.1:5984")
	testenv.TCP(t, "CouchDB (pouchdb-server)", strings.TrimPrefix(couch, "http://"), "run make services")
	return couch
}
