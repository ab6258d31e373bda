package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Invoke runs module/function with args, the exact bytes of an MQTT message
// (always valid JSON). The controller plugs its dispatcher in here. An error
// is logged and counted; the message is not redelivered.
type Invoke func(ctx context.Context, module, function string, args []byte) error

// Config configures a Manager. Only Invoke is required.
type Config struct {
	Invoke Invoke
	// Instance names this controller in MQTT client ids, which must differ
	// between controllers sharing a broker (a broker drops the older of two
	// connections with the same id). Default: os.Hostname().
	Instance string
	Logger   *slog.Logger          // default slog.Default()
	Registry prometheus.Registerer // where metrics are registered; nil: nowhere

	ConnectTimeout       time.Duration // how long Sync waits for new brokers and subscriptions; default 5s
	MaxInFlight          int           // invocations running at once; default 64
	MaxReconnectInterval time.Duration // cap of the reconnect backoff; default 30s
	KeepAlive            time.Duration // MQTT keep-alive; default 30s
	DrainTimeout         time.Duration // how long Run waits for running invocations on shutdown; default 10s
}

func (c *Config) setDefaults() error {
	if c.Invoke == nil {
		return errors.New("events: Config.Invoke is required")
	}
	if c.Instance == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "controller"
		}
		c.Instance = h
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.MaxReconnectInterval <= 0 {
		c.MaxReconnectInterval = 30 * time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return nil
}

// ClientID is the MQTT client id of controller instance on broker
// ("host:port"): stable across restarts of the same instance, different per
// broker and per instance.
func ClientID(instance, broker string) string {
	sum := sha256.Sum256([]byte(broker))
	return "wisp-ctl-" + instance + "-" + hex.EncodeToString(sum[:4])
}

// Status is the outcome of one binding given to Sync: Err is nil when the
// binding is subscribed, otherwise why not (FunLess answers 207 with the
// message). A binding whose broker is unreachable stays wanted: the Manager
// keeps reconnecting and subscribes it when the broker comes back.
type Status struct {
	Binding
	Err error
}

// Manager keeps the controller's MQTT subscriptions equal to the set last
// given to Sync and turns their JSON messages into invocations.
//
// The name follows the brief the controller integrates against; it is the
// one exception to the "no manager" naming habit.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	slots   chan struct{} // one token per running invocation

	invokeCtx    context.Context // invocations' context, cancelled after the drain
	cancelInvoke context.CancelFunc
	stopping     chan struct{} // closed when shutdown begins: no new invocations

	runMu    sync.Mutex // guards closing and the Add side of running
	closing  bool
	running  sync.WaitGroup // invocations
	brokerWG sync.WaitGroup // broker connection loops

	mu      sync.Mutex
	closed  bool
	brokers map[string]*broker // by "host:port"
	changed chan struct{}      // closed and replaced on any connection or subscription change
}

// New returns a Manager; it does no I/O. Connections are made by Sync and
// closed when Run returns.
func New(cfg Config) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:          cfg,
		log:          cfg.Logger,
		metrics:      newMetrics(cfg.Registry),
		slots:        make(chan struct{}, cfg.MaxInFlight),
		invokeCtx:    ctx,
		cancelInvoke: cancel,
		stopping:     make(chan struct{}),
		brokers:      map[string]*broker{},
		changed:      make(chan struct{}),
	}, nil
}

// Run blocks until ctx ends, then shuts down: no new invocations, every
// broker disconnected, running invocations given Config.DrainTimeout to end
// before their context is cancelled. Sync may be called before Run.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	m.shutdown()
	return nil
}

func (m *Manager) shutdown() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	for addr, b := range m.brokers {
		b.retire()
		delete(m.brokers, addr)
	}
	m.mu.Unlock()

	m.runMu.Lock()
	m.closing = true
	close(m.stopping)
	m.runMu.Unlock()
	m.brokerWG.Wait()

	done := make(chan struct{})
	go func() { m.running.Wait(); close(done) }()
	t := time.NewTimer(m.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		m.log.Warn("events: invocations still running after the drain timeout; cancelling them", "timeout", m.cfg.DrainTimeout)
	}
	m.cancelInvoke()
	<-done
}

// Sync makes the live subscriptions exactly bindings: it subscribes the new
// ones, unsubscribes those no longer given and leaves the others alone. It
// returns one Status per binding, in order, after every binding is decided or
// Config.ConnectTimeout has passed (or ctx ended), whichever is first.
//
// Local events must not be given (see the package comment).
//
// # Errors
//
// Sync itself fails only after Run has returned (ErrClosed). Per-binding
// problems are in the statuses: ErrInvalidEvent (empty names, bad port or
// topic filter; such a binding is ignored), ErrNotConnected (the broker
// refused or did not answer; retried with backoff) and ErrSubscribe.
func (m *Manager) Sync(ctx context.Context, bindings []Binding) ([]Status, error) {
	statuses := make([]Status, len(bindings))
	want := map[string]map[string]map[target]struct{}{} // broker -> filter -> functions
	for i, b := range bindings {
		statuses[i].Binding = b
		if err := checkBinding(b); err != nil {
			statuses[i].Err = err
			continue
		}
		addr := b.Broker()
		if want[addr] == nil {
			want[addr] = map[string]map[target]struct{}{}
		}
		if want[addr][b.Topic] == nil {
			want[addr][b.Topic] = map[target]struct{}{}
		}
		want[addr][b.Topic][target{b.Module, b.Function}] = struct{}{}
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	for addr, b := range m.brokers {
		if _, ok := want[addr]; !ok {
			b.retire()
			delete(m.brokers, addr)
			m.metrics.connected.DeleteLabelValues(addr)
		}
	}
	for addr, filters := range want {
		b, ok := m.brokers[addr]
		if !ok {
			b = newBroker(m, addr)
			m.brokers[addr] = b
			b.setRoutes(filters)
			m.brokerWG.Go(b.run)
			continue
		}
		b.setRoutes(filters)
	}
	m.mu.Unlock()

	deadline := time.NewTimer(m.cfg.ConnectTimeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		pending := false
		for i := range statuses {
			s := &statuses[i]
			if s.Err != nil && errors.Is(s.Err, ErrInvalidEvent) {
				continue
			}
			b := m.brokers[s.Broker()]
			if b == nil { // a concurrent Sync removed it
				s.Err = fmt.Errorf("%w: %s was removed by a later Sync", ErrNotConnected, s.Broker())
				continue
			}
			decided, err := b.state(s.Topic)
			s.Err = err
			pending = pending || !decided
		}
		changed := m.changed
		m.mu.Unlock()
		if !pending {
			return statuses, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return m.timedOut(statuses), nil
		case <-ctx.Done():
			return m.timedOut(statuses), nil
		}
	}
}

// timedOut fills in the statuses still undecided when Sync stops waiting.
func (m *Manager) timedOut(statuses []Status) []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range statuses {
		s := &statuses[i]
		if s.Err != nil {
			continue
		}
		b := m.brokers[s.Broker()]
		if b == nil {
			continue
		}
		if decided, err := b.state(s.Topic); decided {
			s.Err = err
		} else if b.connected {
			s.Err = fmt.Errorf("%w: %s: no SUBACK for %q within %s", ErrSubscribe, s.Broker(), s.Topic, m.cfg.ConnectTimeout)
		} else {
			s.Err = fmt.Errorf("%w: %s: no connection within %s", ErrNotConnected, s.Broker(), m.cfg.ConnectTimeout)
		}
	}
	return statuses
}

// notify wakes every Sync waiting for a change. Call with m.mu held.
func (m *Manager) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func checkBinding(b Binding) error {
	switch {
	case b.Module == "" || b.Function == "":
		return fmt.Errorf("%w: module and function are required", ErrInvalidEvent)
	case b.Host == "":
		return fmt.Errorf("%w: host is required", ErrInvalidEvent)
	case b.Port < 1 || b.Port > 65535:
		return fmt.Errorf("%w: port %d is outside 1..65535", ErrInvalidEvent, b.Port)
	case !validFilter(b.Topic):
		return fmt.Errorf("%w: topic %q is not a valid MQTT topic filter", ErrInvalidEvent, b.Topic)
	}
	return nil
}

// startInvoke takes an invocation slot, waiting while all are taken (which
// stops the broker connection from reading: backpressure). It returns false
// when the Manager is shutting down.
func (m *Manager) startInvoke() bool {
	select {
	case m.slots <- struct{}{}:
	case <-m.stopping:
		return false
	}
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.closing {
		<-m.slots
		return false
	}
	m.running.Add(1)
	return true
}

func (m *Manager) invoke(t target, topic string, args []byte) {
	defer func() {
		<-m.slots
		m.running.Done()
	}()
	if err := m.cfg.Invoke(m.invokeCtx, t.module, t.function, args); err != nil {
		m.metrics.messages.WithLabelValues(resultError).Inc()
		m.log.Warn("events: invocation from an MQTT message failed", "module", t.module, "function", t.function, "topic", topic, "err", err)
		return
	}
	m.metrics.messages.WithLabelValues(resultInvoked).Inc()
}
