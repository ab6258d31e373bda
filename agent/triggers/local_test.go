package triggers

import (
	"context"
	"errors"
	"fmt"
	"github.com/wispfn/wisp/agent/activation"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

type call struct {
	module, function, args, id, topic string
	dup                               bool
	// key is the message's dedupe key as the agent computes it
	// (activation.MessageKey): the same for every delivery of a message.
	key [32]byte
}

type recorder struct {
	mu    sync.Mutex
	calls []call
	fail  func(args string) error // nil: always succeed
}

func (r *recorder) invoke(ctx context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{m.Module, m.Function, string(m.Payload), m.ActivationID, m.Topic, m.Redelivered,
		activation.MessageKey(m.Module, m.Function, m.Topic, m.Payload)})
	if r.fail != nil {
		return r.fail(string(m.Payload))
	}
	return nil
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// count returns how many calls had args.
func (r *recorder) count(args string) int {
	n := 0
	for _, c := range r.snapshot() {
		if c.args == args {
			n++
		}
	}
	return n
}

func (r *recorder) waitArgs(t testing.TB, args string, n int) {
	t.Helper()
	testwait.Until(t, 10*time.Second, func() error {
		if got := r.count(args); got < n {
			return fmt.Errorf("%d calls with %s, want %d", got, args, n)
		}
		return nil
	})
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type running struct {
	*Local
	stop func() // cancels Run and waits for it
}

// start builds a Local, gives it bindings and runs it until stop or the end of the test.
func start(t testing.TB, cfg Config, bindings ...Binding) running {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = ClientID("test-" + testenv.Unique())
	}
	cfg.Broker = "tcp://" + testenv.MosquittoAddr
	cfg.Logger = testLogger()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(context.Background(), bindings); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { forgetSession(cfg.ClientID) }) // runs after stop
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return running{l, stop}
}

// forgetSession removes the broker's persistent session of id (a clean
// connect ends it), so tests leave nothing behind in the shared broker.
func forgetSession(id string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + testenv.MosquittoAddr).SetClientID(id).SetCleanSession(true))
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		c.Disconnect(100)
	}
}

func publisher(t testing.TB) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + testenv.MosquittoAddr).SetClientID("wisp-test-pub-" + testenv.Unique()))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t testing.TB, c mqtt.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on %s: %v", topic, tok.Error())
	}
}

// waitSubscribed publishes probes on topic until one arrives, so the test
// knows the subscription is live.
func waitSubscribed(t testing.TB, pub mqtt.Client, rec *recorder, topic string) {
	t.Helper()
	n := 0
	testwait.Until(t, 10*time.Second, func() error {
		n++
		publish(t, pub, topic, fmt.Sprintf(`{"probe":%d}`, n))
		time.Sleep(50 * time.Millisecond)
		for _, c := range rec.snapshot() {
			if len(c.args) > 8 && c.args[:8] == `{"probe"` {
				return nil
			}
		}
		return errors.New("no probe arrived")
	})
}

func TestMessageInvokesFunction(t *testing.T) {
	testenv.Mosquitto(t)
	rec := &recorder{}
	topic := "wisp/test/local/" + testenv.Unique()
	l := start(t, Config{Invoke: rec.invoke}, Binding{"mod", "fn", topic}, Binding{"mod", "other", topic + "/#"})
	pub := publisher(t)
	waitSubscribed(t, pub, rec, topic)

	const args = `{"v": [1, 2, 3]}`
	publish(t, pub, topic, args)
	rec.waitArgs(t, args, 2) // both bindings: the exact topic and topic/#
	ids := map[string]bool{}
	for _, c := range rec.snapshot() {
		if c.args == args {
			if c.module != "mod" || (c.function != "fn" && c.function != "other") || len(c.id) != 26 {
				t.Errorf("bad call %+v", c)
			}
			ids[c.id] = true
		}
	}
	if len(ids) != 2 {
		t.Errorf("activation ids %v, want 2 distinct", ids)
	}
	if n := testutil.CollectAndCount(l.metrics.latency); n != 1 {
		t.Errorf("latency histogram series = %d", n)
	}
	if got := testutil.ToFloat64(l.metrics.connected); got != 1 {
		t.Errorf("connected = %v", got)
	}
}

// TestPersistentSession: messages published while no agent is connected are
// delivered to the next Local with the same client id.
func TestPersistentSession(t *testing.T) {
	testenv.Mosquitto(t)
	id := ClientID("test-persist-" + testenv.Unique())
	topic := "wisp/test/persist/" + testenv.Unique()
	b := Binding{"mod", "fn", topic}
	pub := publisher(t)

	rec1 := &recorder{}
	l1 := start(t, Config{Invoke: rec1.invoke, ClientID: id}, b)
	waitSubscribed(t, pub, rec1, topic)
	l1.stop()

	const n = 100
	for i := range n {
		publish(t, pub, topic, fmt.Sprintf(`{"i":%d}`, i))
	}
	rec2 := &recorder{}
	start(t, Config{Invoke: rec2.invoke, ClientID: id}, b)
	testwait.Until(t, 10*time.Second, func() error {
		for i := range n {
			if rec2.count(fmt.Sprintf(`{"i":%d}`, i)) == 0 {
				return fmt.Errorf("message %d not delivered after the restart (%d calls)", i, len(rec2.snapshot()))
			}
		}
		return nil
	})
	if rec1.count(`{"i":0}`) != 0 {
		t.Error("the stopped Local was invoked")
	}
}

// TestInvokeErrorRedelivers: a failed Invoke leaves the message unacked; the
// session restart gets it again, and once Invoke succeeds it is acked (no
// third delivery, even across a later restart).
func TestInvokeErrorRedelivers(t *testing.T) {
	testenv.Mosquitto(t)
	id := ClientID("test-redeliver-" + testenv.Unique())
	topic := "wisp/test/redeliver/" + testenv.Unique()
	b := Binding{"mod", "fn", topic}
	const args = `{"flaky":true}`
	var mu sync.Mutex
	failures := 1
	rec := &recorder{fail: func(a string) error {
		mu.Lock()
		defer mu.Unlock()
		if a == args && failures > 0 {
			failures--
			return errors.New("outbox full")
		}
		return nil
	}}
	pub := publisher(t)
	l := start(t, Config{Invoke: rec.invoke, ClientID: id, RedeliverDelay: 100 * time.Millisecond}, b)
	waitSubscribed(t, pub, rec, topic)
	publish(t, pub, topic, args)
	rec.waitArgs(t, args, 2)
	calls := rec.snapshot()
	var ids []string
	var same []call
	for _, c := range calls {
		if c.args == args {
			ids = append(ids, c.id)
			same = append(same, c)
		}
	}
	if ids[0] == ids[1] {
		t.Errorf("a redelivery reused activation id %s", ids[0])
	}
	// The redelivery carries the DUP flag and the same function, topic and
	// payload (agent/activation's message key), which is what lets the
	// agent recognise a message it already ran.
	if same[0].dup || !same[1].dup || same[0].topic != topic || same[1].topic != topic || same[0].module != same[1].module || same[0].function != same[1].function {
		t.Errorf("first delivery %+v, redelivery %+v: want the DUP flag on the second only, the same function and topic %s", same[0], same[1], topic)
	}
	if got := testutil.ToFloat64(l.metrics.messages.WithLabelValues(resultError)); got != 1 {
		t.Errorf("error count = %v, want 1", got)
	}

	// Acked now. QoS 1 does not promise that an acknowledged message never
	// comes back: a PUBACK still queued when the connection closes is lost,
	// and the broker sends the message again. What the agent relies on is
	// that such a message says so: DUP set and the key of the run, so that
	// its Invoke acknowledges it without running it again
	// (TestUnackedRunComesBackAsDuplicate makes that happen on purpose).
	l.stop()
	rec2 := &recorder{}
	start(t, Config{Invoke: rec2.invoke, ClientID: id}, b)
	waitSubscribed(t, pub, rec2, topic)
	for _, c := range rec2.snapshot() {
		if c.args == args && (!c.dup || c.key != same[1].key) {
			t.Errorf("the acknowledged message came back as a new message: dup=%v, same key=%v", c.dup, c.key == same[1].key)
		}
	}
}

// TestUnackedRunComesBackAsDuplicate: a message that ran but whose
// acknowledgement never reached the broker (a kill -9 after the outbox
// append, a connection lost with the PUBACK queued, a shutdown that outlived
// the drain) is delivered again to the next session, with the DUP flag and
// the key of the first run: what the agent's Invoke needs to acknowledge it
// without running it twice. Here the first Invoke does not return before its
// session is gone, so the broker cannot have had a PUBACK.
func TestUnackedRunComesBackAsDuplicate(t *testing.T) {
	testenv.Mosquitto(t)
	id := ClientID("test-unacked-" + testenv.Unique())
	topic := "wisp/test/unacked/" + testenv.Unique()
	b := Binding{"mod", "fn", topic}
	const args = `{"unacked":true}`
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseInvoke := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseInvoke)
	rec1 := &recorder{}
	held := func(ctx context.Context, m Message) error {
		if err := rec1.invoke(ctx, m); err != nil {
			return err
		}
		if string(m.Payload) == args {
			// Recorded, but not acknowledged while its session lives: Run
			// cancels it after the drain and waits for it.
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	pub := publisher(t)
	l1 := start(t, Config{Invoke: held, ClientID: id, DrainTimeout: 50 * time.Millisecond}, b)
	waitSubscribed(t, pub, rec1, topic)
	publish(t, pub, topic, args)
	rec1.waitArgs(t, args, 1)
	l1.stop() // gives up on the held Invoke after DrainTimeout and disconnects

	rec2 := &recorder{}
	start(t, Config{Invoke: rec2.invoke, ClientID: id}, b)
	rec2.waitArgs(t, args, 1)
	releaseInvoke() // its acknowledgement goes nowhere: the session is closed
	var first, again call
	for _, c := range rec1.snapshot() {
		if c.args == args {
			first = c
		}
	}
	for _, c := range rec2.snapshot() {
		if c.args == args {
			again = c
		}
	}
	if first.dup || !again.dup {
		t.Errorf("first delivery dup=%v, delivery to the next session dup=%v; want false, true", first.dup, again.dup)
	}
	if first.key != again.key {
		t.Error("the message came back with another key; the agent cannot recognise it")
	}
	if first.id == again.id {
		t.Errorf("the second delivery reused activation id %s", first.id)
	}
}

func TestNotJSONAckedAndCounted(t *testing.T) {
	testenv.Mosquitto(t)
	id := ClientID("test-notjson-" + testenv.Unique())
	topic := "wisp/test/notjson/" + testenv.Unique()
	b := Binding{"mod", "fn", topic}
	rec := &recorder{}
	pub := publisher(t)
	l := start(t, Config{Invoke: rec.invoke, ClientID: id}, b)
	waitSubscribed(t, pub, rec, topic)
	// More messages than the broker lets this client hold unacknowledged
	// (Mosquitto's max_inflight_messages, 20 by default), then a JSON
	// marker: the marker can only arrive if the non-JSON messages were
	// acknowledged, which frees their in-flight slots.
	const notJSON = 25
	for range notJSON {
		publish(t, pub, topic, "<xml/>")
	}
	publish(t, pub, topic, `{"marker":1}`)
	rec.waitArgs(t, `{"marker":1}`, 1)
	testwait.Until(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(l.metrics.messages.WithLabelValues(resultNotJSON)); got != notJSON {
			return fmt.Errorf("not_json = %v, want %d", got, notJSON)
		}
		return nil
	})
	if rec.count("<xml/>") != 0 {
		t.Error("a non-JSON message was invoked")
	}
	l.stop()

	// A later session is not invoked with them either, should a lost
	// PUBACK bring one back (QoS 1 allows that).
	rec2 := &recorder{}
	start(t, Config{Invoke: rec2.invoke, ClientID: id}, b)
	waitSubscribed(t, pub, rec2, topic)
	if n := rec2.count("<xml/>"); n != 0 {
		t.Errorf("a non-JSON message was invoked by the next session %d times", n)
	}
}

func TestSyncRemovesBinding(t *testing.T) {
	testenv.Mosquitto(t)
	s := testenv.Unique()
	a, b := Binding{"mod", "a", "wisp/test/lrm/a/" + s}, Binding{"mod", "b", "wisp/test/lrm/b/" + s}
	rec := &recorder{}
	pub := publisher(t)
	l := start(t, Config{Invoke: rec.invoke}, a, b)
	waitSubscribed(t, pub, rec, a.Topic)
	if err := l.Sync(context.Background(), []Binding{b}); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, a.Topic, `{"gone":1}`)
	publish(t, pub, b.Topic, `{"kept":1}`)
	rec.waitArgs(t, `{"kept":1}`, 1)
	if rec.count(`{"gone":1}`) != 0 {
		t.Error("a removed binding was invoked")
	}
	if err := l.Sync(context.Background(), []Binding{{"", "x", "t"}}); !errors.Is(err, ErrInvalidBinding) {
		t.Errorf("invalid binding: %v", err)
	}
}

func TestRunWaitsForFirstSync(t *testing.T) {
	l, err := New(Config{Invoke: (&recorder{}).invoke, ClientID: "x", Broker: "tcp://127.0.0.1:1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Run: %v, want ErrClosed", err)
	}
}
