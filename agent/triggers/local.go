package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/internal/mqtttopic"
)

// Message is one delivery of an MQTT message to one function bound to its
// topic.
type Message struct {
	Module, Function string
	Topic            string
	// Payload is the message's exact bytes, a JSON text: the function's
	// args.
	Payload []byte
	// ActivationID is the id to run it as (fresh for every delivery).
	ActivationID string
	// Redelivered is the MQTT DUP flag: the broker sent this message
	// before, and the agent may have run it and crashed before
	// acknowledging it.
	Redelivered bool
}

// Invoke runs m. It must return nil only once the activation is durably
// recorded (the agent's outbox append), or when m is a redelivery of a
// message already recorded; the function's own failure is a recorded
// result, not an error here. An error leaves the message unacknowledged, so
// it is delivered again. The agent's Invoke is agent/activation's
// RunMessage, whose errors say why (not in the desired set, no code yet,
// overloaded, not recorded).
type Invoke func(ctx context.Context, m Message) error

// Binding is one local trigger: messages on Topic (an MQTT topic filter; + and
// # are allowed) invoke Module/Function.
type Binding struct {
	Module, Function string
	Topic            string
}

// DefaultBroker is the broker an agent uses when --mqtt-broker is not given.
const DefaultBroker = "tcp://127.0.0.1:1883"

// ClientID is the MQTT client id of agent agentID. It must be stable across
// restarts: the broker keeps the persistent session under it.
func ClientID(agentID string) string { return "wisp-agent-" + agentID }

// Config configures a Local. Invoke and ClientID are required.
type Config struct {
	Broker   string // default DefaultBroker
	ClientID string // ClientID(agent id)
	Invoke   Invoke
	Logger   *slog.Logger          // default slog.Default()
	Registry prometheus.Registerer // nil: metrics are not registered

	MaxInFlight          int           // invocations running at once; default 64
	ConnectTimeout       time.Duration // per connection attempt and per (un)subscribe; default 5s
	MaxReconnectInterval time.Duration // cap of every backoff; default 30s
	KeepAlive            time.Duration // default 30s
	RedeliverDelay       time.Duration // first wait before restarting the session after a failed Invoke; default 1s
	DrainTimeout         time.Duration // how long running invocations may take on shutdown or session restart; default 10s
}

func (c *Config) setDefaults() error {
	if c.Invoke == nil {
		return errors.New("triggers: Config.Invoke is required")
	}
	if c.ClientID == "" {
		return errors.New("triggers: Config.ClientID is required")
	}
	if c.Broker == "" {
		c.Broker = DefaultBroker
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.MaxReconnectInterval <= 0 {
		c.MaxReconnectInterval = 30 * time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.RedeliverDelay <= 0 {
		c.RedeliverDelay = time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return nil
}

type target struct{ module, function string }

// session is one paho client, from creation to disconnect. Its handlers stop
// taking messages once it is closing; those messages stay unacked and the
// broker delivers them to the next session.
type session struct {
	client  mqtt.Client
	closing bool          // guarded by Local.mu
	stop    chan struct{} // closed with closing
	running sync.WaitGroup
}

// Local runs the agent's edge-local triggers on one broker. See the package
// comment for the delivery contract.
type Local struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	slots   chan struct{}

	invokeCtx    context.Context
	cancelInvoke context.CancelFunc
	redeliver    chan struct{} // an Invoke failed: restart the session
	invokedOK    atomic.Bool   // an Invoke succeeded since the last session restart

	synced     chan struct{} // closed by the first Sync
	syncedOnce sync.Once

	// undrained holds the drains of sessions closed with invocations
	// still running (Config.DrainTimeout passed); Run waits for them before
	// it returns. Only Run's goroutine touches it.
	undrained []chan struct{}

	mu        sync.Mutex
	closed    bool
	routes    map[string]map[target]struct{} // filter -> functions
	stale     map[string]bool                // filters removed while disconnected: unsubscribe on connect
	sess      *session                       // the current session, nil between sessions
	connected bool
}

// New returns a Local; it does no I/O.
func New(cfg Config) (*Local, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Local{
		cfg:          cfg,
		log:          cfg.Logger,
		metrics:      newMetrics(cfg.Registry),
		slots:        make(chan struct{}, cfg.MaxInFlight),
		invokeCtx:    ctx,
		cancelInvoke: cancel,
		redeliver:    make(chan struct{}, 1),
		synced:       make(chan struct{}),
		routes:       map[string]map[target]struct{}{},
		stale:        map[string]bool{},
	}, nil
}

// Sync makes the local triggers exactly bindings. While connected it
// (un)subscribes at once and waits for the broker's answers; otherwise the
// change is applied on the next connect. The first Sync lets Run connect.
//
// # Errors
//
// ErrClosed after Run returned; ErrInvalidBinding (nothing is changed); and
// ErrSubscribe when the broker refused or did not answer, in which case the
// wanted set is still recorded and subscribed again on the next connect.
func (l *Local) Sync(ctx context.Context, bindings []Binding) error {
	want := map[string]map[target]struct{}{}
	for _, b := range bindings {
		if b.Module == "" || b.Function == "" || !mqtttopic.ValidFilter(b.Topic) {
			return fmt.Errorf("%w: %+v", ErrInvalidBinding, b)
		}
		if want[b.Topic] == nil {
			want[b.Topic] = map[target]struct{}{}
		}
		want[b.Topic][target{b.Module, b.Function}] = struct{}{}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	var add, drop []string
	for f := range l.routes {
		if _, ok := want[f]; !ok {
			drop = append(drop, f)
		}
	}
	for f := range want {
		if _, ok := l.routes[f]; !ok {
			add = append(add, f)
		}
		delete(l.stale, f)
	}
	l.routes = want
	var c mqtt.Client
	if l.connected && l.sess != nil {
		c = l.sess.client
	} else {
		for _, f := range drop {
			l.stale[f] = true
		}
	}
	l.mu.Unlock()
	l.syncedOnce.Do(func() { close(l.synced) })
	if c == nil {
		return nil
	}
	return l.apply(ctx, c, add, drop)
}

// apply (un)subscribes on c and waits for the broker's answers.
func (l *Local) apply(ctx context.Context, c mqtt.Client, add, drop []string) error {
	var errs []error
	wait := func(tok mqtt.Token, what string) {
		t := time.NewTimer(l.cfg.ConnectTimeout)
		defer t.Stop()
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: %w", ErrSubscribe, what, err))
			}
		case <-t.C:
			errs = append(errs, fmt.Errorf("%w: %s: no answer within %s", ErrSubscribe, what, l.cfg.ConnectTimeout))
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrSubscribe, what, ctx.Err()))
		}
	}
	if len(drop) > 0 {
		wait(c.Unsubscribe(drop...), fmt.Sprintf("unsubscribe %q", drop))
	}
	if len(add) > 0 {
		req := make(map[string]byte, len(add))
		for _, f := range add {
			req[f] = 1
		}
		tok := c.SubscribeMultiple(req, nil)
		wait(tok, fmt.Sprintf("subscribe %q", add))
		if st, ok := tok.(*mqtt.SubscribeToken); ok && tok.Error() == nil {
			for f, code := range st.Result() {
				if code > 2 {
					errs = append(errs, fmt.Errorf("%w: the broker refused %q", ErrSubscribe, f))
				}
			}
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		l.log.Warn("triggers: subscriptions not applied; retried on the next connect", "err", err)
	}
	return err
}

// Run connects after the first Sync and keeps a session until ctx ends; it
// then stops taking messages, gives running invocations Config.DrainTimeout
// and disconnects. It restarts the session after a failed Invoke so that the
// broker redelivers the unacked message.
//
// When Run returns no invocation it started is running: those still running
// after the drain have their context cancelled, and Run waits for them to
// return (their messages stay unacknowledged).
func (l *Local) Run(ctx context.Context) error {
	defer func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.cancelInvoke()
		for _, drained := range l.undrained {
			<-drained
		}
	}()
	select {
	case <-l.synced:
	case <-ctx.Done():
		return nil
	}
	backoff := 500 * time.Millisecond
	redeliverDelay := l.cfg.RedeliverDelay
	for {
		s, err := l.connect()
		if err != nil {
			l.log.Warn("triggers: cannot connect to the MQTT broker; retrying", "broker", l.cfg.Broker, "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, l.cfg.MaxReconnectInterval)
			continue
		}
		backoff = 500 * time.Millisecond
		select {
		case <-ctx.Done():
			l.close(s)
			return nil
		case <-l.redeliver:
		}
		// An Invoke failed: its message is unacked. Wait, then start a new
		// session; the broker resends every unacked message on resume.
		if l.invokedOK.Swap(false) {
			redeliverDelay = l.cfg.RedeliverDelay
		}
		l.log.Info("triggers: restarting the MQTT session to get unacknowledged messages again", "in", redeliverDelay)
		ok := sleep(ctx, redeliverDelay)
		l.close(s)
		if !ok {
			return nil
		}
		redeliverDelay = min(2*redeliverDelay, l.cfg.MaxReconnectInterval)
		select { // failures of the closed session are handled by this restart
		case <-l.redeliver:
		default:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// connect starts a session and waits for the broker to accept it.
func (l *Local) connect() (*session, error) {
	s := &session{stop: make(chan struct{})}
	o := mqtt.NewClientOptions().
		AddBroker(l.cfg.Broker).
		SetClientID(l.cfg.ClientID).
		SetCleanSession(false). // the broker keeps subscriptions and queues messages while we are away
		SetProtocolVersion(4).  // MQTT 3.1.1
		SetKeepAlive(l.cfg.KeepAlive).
		SetConnectTimeout(l.cfg.ConnectTimeout).
		SetConnectRetry(false). // Run retries with its own backoff
		SetAutoReconnect(true).
		SetMaxReconnectInterval(l.cfg.MaxReconnectInterval).
		SetOrderMatters(false).   // each message in its own goroutine
		SetAutoAckDisabled(true). // PUBACK only after Invoke succeeded
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { l.onMessage(s, m) }).
		SetOnConnectHandler(func(c mqtt.Client) { l.onConnect(s, c) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { l.onLost(s, err) })
	s.client = mqtt.NewClient(o)
	l.mu.Lock()
	l.sess = s
	l.mu.Unlock()
	tok := s.client.Connect()
	tok.Wait() // bounded by the connect timeout
	if err := tok.Error(); err != nil {
		l.mu.Lock()
		l.sess = nil
		l.mu.Unlock()
		return nil, err
	}
	return s, nil
}

// close stops s taking messages, waits for its running invocations (at most
// Config.DrainTimeout) so their acknowledgements go out, then disconnects.
func (l *Local) close(s *session) {
	l.mu.Lock()
	s.closing = true
	close(s.stop)
	if l.sess == s {
		l.sess, l.connected = nil, false
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	t := time.NewTimer(l.cfg.DrainTimeout)
	select {
	case <-done:
	case <-t.C:
		l.log.Warn("triggers: invocations still running after the drain timeout; their messages may be delivered again", "timeout", l.cfg.DrainTimeout)
		l.undrained = append(l.undrained, done)
	}
	t.Stop()
	s.client.Disconnect(250)
	l.metrics.connected.Set(0)
}

func (l *Local) onConnect(s *session, c mqtt.Client) {
	l.mu.Lock()
	if s.closing {
		l.mu.Unlock()
		return
	}
	l.connected = true
	filters := slices.Collect(maps.Keys(l.routes))
	stale := slices.Collect(maps.Keys(l.stale))
	clear(l.stale)
	l.mu.Unlock()
	l.metrics.connected.Set(1)
	l.log.Info("triggers: connected to the MQTT broker", "broker", l.cfg.Broker, "client_id", l.cfg.ClientID, "topics", len(filters))
	// Subscribing again is harmless when the broker kept the session, and
	// needed when it did not (a broker restarted without persistence).
	l.apply(l.invokeCtx, c, filters, stale)
}

func (l *Local) onLost(s *session, err error) {
	l.mu.Lock()
	if l.sess == s {
		l.connected = false
	}
	l.mu.Unlock()
	l.metrics.connected.Set(0)
	l.log.Warn("triggers: lost the MQTT broker; reconnecting", "broker", l.cfg.Broker, "err", err)
}

// onMessage runs in its own goroutine per message.
func (l *Local) onMessage(s *session, msg mqtt.Message) {
	received := time.Now()
	l.mu.Lock()
	if s.closing {
		l.mu.Unlock()
		return // unacked: the next session gets it again
	}
	s.running.Add(1)
	topic := msg.Topic()
	var targets []target
	for f, ts := range l.routes {
		if mqtttopic.Match(f, topic) {
			for t := range ts {
				if !slices.Contains(targets, t) {
					targets = append(targets, t)
				}
			}
		}
	}
	l.mu.Unlock()
	defer s.running.Done()

	payload := msg.Payload()
	switch {
	case len(targets) == 0:
		l.metrics.messages.WithLabelValues(resultUnrouted).Inc()
		l.log.Info("triggers: message on a topic no local trigger wants; dropped", "topic", topic)
		msg.Ack()
		return
	case !json.Valid(payload):
		l.metrics.messages.WithLabelValues(resultNotJSON).Inc()
		for _, t := range targets {
			l.log.Warn("triggers: MQTT message is not JSON; not invoking", "module", t.module, "function", t.function, "topic", topic, "bytes", len(payload))
		}
		msg.Ack()
		return
	}
	select {
	case l.slots <- struct{}{}:
		defer func() { <-l.slots }()
	case <-s.stop:
		return
	}
	failed := false
	for _, t := range targets {
		id := activationid.New(time.Now())
		l.metrics.latency.Observe(time.Since(received).Seconds())
		m := Message{Module: t.module, Function: t.function, Topic: topic, Payload: payload, ActivationID: id, Redelivered: msg.Duplicate()}
		if err := l.cfg.Invoke(l.invokeCtx, m); err != nil {
			failed = true
			l.metrics.messages.WithLabelValues(resultError).Inc()
			l.log.Warn("triggers: invocation failed; the message stays unacknowledged and will be delivered again",
				"module", t.module, "function", t.function, "topic", topic, "activation", id, "err", err)
			continue
		}
		l.metrics.messages.WithLabelValues(resultInvoked).Inc()
	}
	if failed {
		select {
		case l.redeliver <- struct{}{}:
		default:
		}
		return
	}
	l.invokedOK.Store(true)
	msg.Ack()
}
