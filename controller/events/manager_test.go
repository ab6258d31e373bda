package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

type call struct{ module, function, args string }

type recorder struct {
	mu    sync.Mutex
	calls []call
	fail  error
}

func (r *recorder) invoke(_ context.Context, module, function string, args []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{module, function, string(args)})
	return r.fail
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) has(c call) bool {
	for _, got := range r.snapshot() {
		if got == c {
			return true
		}
	}
	return false
}

func (r *recorder) waitFor(t *testing.T, c call) {
	t.Helper()
	testwait.Until(t, 10*time.Second, func() error {
		if r.has(c) {
			return nil
		}
		return fmt.Errorf("no call %+v; calls: %+v", c, r.snapshot())
	})
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startManager runs a Manager until the test ends.
func startManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.Instance == "" {
		cfg.Instance = "test-" + testenv.Unique()
	}
	cfg.Logger = testLogger(t)
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	held := make(chan error, 1)
	go func() { held <- m.Hold(ctx) }() // a lone controller holds the subscriptions all along
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := <-held; err != nil {
			t.Errorf("Hold: %v", err)
		}
		endSessions(t, m)
	})
	waitHolding(t, m)
	return m
}

func waitHolding(t *testing.T, m *Manager) {
	t.Helper()
	testwait.Until(t, 5*time.Second, func() error {
		if !m.Holding() {
			return errors.New("Hold has not begun")
		}
		return nil
	})
}

// endSessions ends the MQTT sessions m's brokers kept for its cluster, so
// that the shared test broker does not queue messages for them forever.
func endSessions(t *testing.T, m *Manager) {
	m.mu.Lock()
	var addrs []string
	for addr := range m.want {
		addrs = append(addrs, addr)
	}
	m.mu.Unlock()
	for _, addr := range addrs {
		o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(ClientID(m.cfg.Cluster, addr)).
			SetCleanSession(true).SetConnectTimeout(2 * time.Second)
		c := mqtt.NewClient(o)
		if tok := c.Connect(); tok.WaitTimeout(3*time.Second) && tok.Error() == nil {
			c.Disconnect(100)
		}
	}
}

func publisher(t *testing.T, addr string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("wisp-test-pub-" + testenv.Unique()).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect to %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on %s: %v", topic, tok.Error())
	}
}

func mustSync(t *testing.T, m *Manager, bs ...Binding) {
	t.Helper()
	st, err := m.Sync(context.Background(), bs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Err != nil {
			t.Fatalf("Sync %s: %v", s.Binding, s.Err)
		}
	}
}

func local(module, function, topic string) Binding {
	return Binding{Module: module, Function: function, Host: "127.0.0.1", Port: 1883, Topic: topic}
}

func TestMessageInvokesFunction(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke})
	topic := "wisp/test/invoke/" + testenv.Unique()
	mustSync(t, m, local("mod", "fn", topic))

	pub := publisher(t, testenv.MosquittoAddr)
	const args = `{"temp": 21.5, "unit":"C"}`
	publish(t, pub, topic, args)
	rec.waitFor(t, call{"mod", "fn", args}) // the exact bytes, spacing included
	testwait.Until(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(m.metrics.messages.WithLabelValues(resultInvoked)); got != 1 {
			return fmt.Errorf("invoked = %v, want 1", got)
		}
		return nil
	})
	if got := testutil.ToFloat64(m.metrics.connected.WithLabelValues(testenv.MosquittoAddr)); got != 1 {
		t.Errorf("wisp_events_connected = %v, want 1", got)
	}
}

func TestNotJSONIsCountedNotInvoked(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke})
	topic := "wisp/test/notjson/" + testenv.Unique()
	mustSync(t, m, local("mod", "fn", topic))

	pub := publisher(t, testenv.MosquittoAddr)
	publish(t, pub, topic, "this is not json")
	publish(t, pub, topic, `{"after":true}`) // same publisher and topic: delivered in order
	rec.waitFor(t, call{"mod", "fn", `{"after":true}`})
	if calls := rec.snapshot(); len(calls) != 1 {
		t.Errorf("calls = %+v, want only the JSON message", calls)
	}
	if got := testutil.ToFloat64(m.metrics.messages.WithLabelValues(resultNotJSON)); got != 1 {
		t.Errorf("not_json = %v, want 1", got)
	}
}

func TestInvokeErrorIsCounted(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{fail: errors.New("no agent")}
	m := startManager(t, Config{Invoke: rec.invoke})
	topic := "wisp/test/fail/" + testenv.Unique()
	mustSync(t, m, local("mod", "fn", topic))
	publish(t, publisher(t, testenv.MosquittoAddr), topic, `{}`)
	testwait.Until(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(m.metrics.messages.WithLabelValues(resultError)); got != 1 {
			return fmt.Errorf("error = %v, want 1", got)
		}
		return nil
	})
}

func TestSyncRemovesBinding(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke})
	s := testenv.Unique()
	a, b := local("mod", "a", "wisp/test/rm/a/"+s), local("mod", "b", "wisp/test/rm/b/"+s)
	mustSync(t, m, a, b)
	pub := publisher(t, testenv.MosquittoAddr)
	publish(t, pub, a.Topic, `{"n":1}`)
	rec.waitFor(t, call{"mod", "a", `{"n":1}`})

	mustSync(t, m, b) // a is gone, b unchanged
	publish(t, pub, a.Topic, `{"n":2}`)
	publish(t, pub, b.Topic, `{"n":3}`) // one connection: b's message comes after a's
	rec.waitFor(t, call{"mod", "b", `{"n":3}`})
	if rec.has(call{"mod", "a", `{"n":2}`}) {
		t.Error("a was invoked after Sync removed its binding")
	}

	mustSync(t, m) // nothing: the broker connection goes too
	m.mu.Lock()
	n := len(m.brokers)
	m.mu.Unlock()
	if n != 0 {
		t.Errorf("%d broker connections after Sync(nil), want 0", n)
	}
}

func TestBindingsShareOneConnection(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke})
	s := testenv.Unique()
	shared := "wisp/test/share/" + s
	mustSync(t, m,
		local("mod", "f1", shared),
		local("mod", "f2", shared),
		local("other", "f3", "wisp/test/share/"+s+"/+"),
	)
	m.mu.Lock()
	n := len(m.brokers)
	m.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d broker connections, want 1", n)
	}
	pub := publisher(t, testenv.MosquittoAddr)
	publish(t, pub, shared, `{"x":1}`)
	publish(t, pub, shared+"/room1", `{"x":2}`)
	rec.waitFor(t, call{"mod", "f1", `{"x":1}`})
	rec.waitFor(t, call{"mod", "f2", `{"x":1}`})
	rec.waitFor(t, call{"other", "f3", `{"x":2}`})
}

func TestRefusingBrokerReportsError(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke, ConnectTimeout: 2 * time.Second})
	closed := freePort(t)
	topic := "wisp/test/refused/" + testenv.Unique()
	bad := Binding{Module: "mod", Function: "bad", Host: "127.0.0.1", Port: closed, Topic: topic}
	good := local("mod", "good", topic)
	invalid := Binding{Module: "mod", Function: "inv", Host: "127.0.0.1", Port: 1883, Topic: "a/#/b"}

	start := time.Now()
	st, err := m.Sync(context.Background(), []Binding{bad, good, invalid})
	if err != nil {
		t.Fatal(err)
	}
	// A refused broker must not hold Sync beyond the connect timeout (no
	// retry loop inside Sync); generous slack for a slow machine.
	if el := time.Since(start); el > 2*time.Second+3*time.Second {
		t.Errorf("Sync took %s, want about the 2s timeout at most", el)
	}
	if !errors.Is(st[0].Err, ErrNotConnected) {
		t.Errorf("refusing broker: status %v, want ErrNotConnected", st[0].Err)
	}
	if st[1].Err != nil {
		t.Errorf("good broker: status %v, want success", st[1].Err)
	}
	if !errors.Is(st[2].Err, ErrInvalidEvent) {
		t.Errorf("invalid filter: status %v, want ErrInvalidEvent", st[2].Err)
	}
	publish(t, publisher(t, testenv.MosquittoAddr), topic, `{"ok":1}`)
	rec.waitFor(t, call{"mod", "good", `{"ok":1}`})
	if got := testutil.ToFloat64(m.metrics.connected.WithLabelValues(net.JoinHostPort("127.0.0.1", strconv.Itoa(closed)))); got != 0 {
		t.Errorf("connected gauge of the refusing broker = %v", got)
	}
}

func TestRestoredAfterRestart(t *testing.T) {
	testenv.Mosquitto(t)
	instance := "test-restart-" + testenv.Unique()
	topic := "wisp/test/restore/" + testenv.Unique()
	b := local("mod", "fn", topic)
	pub := publisher(t, testenv.MosquittoAddr)

	rec1 := &recorder{}
	m1, err := New(Config{Invoke: rec1.invoke, Instance: instance, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m1.Run(ctx) }()
	held := make(chan error, 1)
	go func() { held <- m1.Hold(ctx) }()
	waitHolding(t, m1)
	mustSync(t, m1, b)
	publish(t, pub, topic, `{"run":1}`)
	rec1.waitFor(t, call{"mod", "fn", `{"run":1}`})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("Hold: %v", err)
	}
	if _, err := m1.Sync(context.Background(), []Binding{b}); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Run returned: %v, want ErrClosed", err)
	}

	// The controller restarts and calls Sync with every stored binding.
	rec2 := &recorder{}
	m2 := startManager(t, Config{Invoke: rec2.invoke, Instance: instance})
	mustSync(t, m2, b)
	publish(t, pub, topic, `{"run":2}`)
	rec2.waitFor(t, call{"mod", "fn", `{"run":2}`})
}

// TestReconnectAfterBrokerRestart kills a private mosquitto and starts it
// again on the same port; the Manager reconnects and re-subscribes.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		testenv.Missing(t, "mosquitto binary", "install mosquitto")
	}
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	stop := startMosquitto(t, bin, port)

	rec := &recorder{}
	m := startManager(t, Config{Invoke: rec.invoke, MaxReconnectInterval: time.Second})
	topic := "wisp/test/reconnect/" + testenv.Unique()
	b := Binding{Module: "mod", Function: "fn", Host: "127.0.0.1", Port: port, Topic: topic}
	mustSync(t, m, b)
	pub := publisher(t, addr)
	publish(t, pub, topic, `{"before":true}`)
	rec.waitFor(t, call{"mod", "fn", `{"before":true}`})

	stop()
	gauge := m.metrics.connected.WithLabelValues(addr)
	testwait.Until(t, 10*time.Second, func() error {
		if testutil.ToFloat64(gauge) != 0 {
			return errors.New("still connected after the broker was killed")
		}
		return nil
	})
	startMosquitto(t, bin, port)
	testwait.Until(t, 15*time.Second, func() error {
		if testutil.ToFloat64(gauge) != 1 {
			return errors.New("not reconnected")
		}
		return nil
	})
	// The re-subscription may trail the connection: publish until one arrives.
	var n int
	testwait.Until(t, 10*time.Second, func() error {
		n++
		args := fmt.Sprintf(`{"after":%d}`, n)
		if tok := pub.Publish(topic, 1, false, args); !tok.WaitTimeout(time.Second) {
			return errors.New("publish not acknowledged")
		}
		time.Sleep(100 * time.Millisecond)
		for _, c := range rec.snapshot() {
			if len(c.args) > 9 && c.args[:9] == `{"after":` {
				return nil
			}
		}
		return errors.New("no message after the restart")
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// startMosquitto runs a throwaway broker on port and waits until it listens;
// the returned func kills it (SIGKILL) and waits for it to exit.
func startMosquitto(t *testing.T, bin string, port int) (kill func()) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(kill)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testwait.Until(t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return kill
}
