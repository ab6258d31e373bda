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
	// Instance names this controller process in the client ids of the
	// short connections Check makes. Default: os.Hostname().
	Instance string
	// Cluster names the cluster in the client id of its session on each
	// broker (ClientID): every controller of one cluster uses the same
	// session, so that the broker keeps its messages while no controller
	// holds it (see the package doc). Two clusters sharing a broker must
	// differ. Default: Instance.
	Cluster  string
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
	if c.Cluster == "" {
		c.Cluster = c.Instance
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

// ClientID is the MQTT client id of cluster's session on broker
// ("host:port"): the same for every controller of the cluster and across
// restarts, different per cluster and per broker. It is 22 characters,
// within the 23 every MQTT 3.1.1 broker must accept.
func ClientID(cluster, broker string) string {
	c := sha256.Sum256([]byte(cluster))
	b := sha256.Sum256([]byte(broker))
	return "wisp-" + hex.EncodeToString(c[:4]) + "-" + hex.EncodeToString(b[:4])
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
// given to Sync, while it holds them (Hold), and turns their JSON messages
// into invocations.
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
	holding bool                                      // within Hold: brokers are connected
	want    map[string]map[string]map[target]struct{} // broker -> filter -> functions, of the last Sync; nil before the first
	brokers map[string]*broker                        // by "host:port"; empty unless holding
	handed  map[string]*recentSet                     // by broker: messages recently handed to invocations
	changed chan struct{}                             // closed and replaced on any connection or subscription change
}

// New returns a Manager; it does no I/O. Connections are made while Hold
// runs and closed when it returns.
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
		handed:       map[string]*recentSet{},
		changed:      make(chan struct{}),
	}, nil
}

// Run blocks until ctx ends, then shuts down: no new invocations, every
// broker disconnected (Hold returns), running invocations given
// Config.DrainTimeout to end before their context is cancelled. Sync and
// Hold may be called before Run.
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
	m.retireAll()
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

// Hold connects to the brokers of the subscriptions and keeps them equal
// to what Sync is given, until ctx ends (or Run shuts the Manager down);
// then it disconnects from every broker and returns. The controller calls
// it while it holds the cluster's "events" lease (controller/cluster), so
// that one controller of a cluster subscribes at a time; a lone
// controller calls it for its whole run.
//
// Hold connects nothing before the first Sync: connecting to a session
// the broker kept, with no routes known, would acknowledge its queued
// messages without invoking anything. Invocations started while holding keep
// running after Hold returns (their messages are acknowledged); Run
// drains them.
//
// # Errors
//
// ErrClosed once Run has returned; ErrHolding when another Hold runs.
func (m *Manager) Hold(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return ErrClosed
	case m.holding:
		m.mu.Unlock()
		return ErrHolding
	}
	m.holding = true
	m.apply()
	m.notify()
	m.mu.Unlock()

	select {
	case <-ctx.Done():
	case <-m.stopping:
	}

	m.mu.Lock()
	retired := m.retireAll()
	m.holding = false
	m.notify()
	m.mu.Unlock()
	for _, b := range retired {
		<-b.done // disconnected: the next holder's connection does not meet this one
	}
	return nil
}

// Holding reports whether Hold runs: this controller is the one connected
// to the brokers.
func (m *Manager) Holding() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holding
}

// retireAll stops every broker's loop, keeping the brokers' sessions (the
// next holder resumes them). Call with m.mu held.
func (m *Manager) retireAll() []*broker {
	var out []*broker
	for addr, b := range m.brokers {
		b.retire()
		delete(m.brokers, addr)
		m.metrics.connected.DeleteLabelValues(addr)
		out = append(out, b)
	}
	return out
}

// apply makes the brokers those of m.want while holding. A broker no
// longer wanted is disconnected and its session ended (forget). Call with
// m.mu held.
func (m *Manager) apply() {
	if !m.holding || m.want == nil {
		return
	}
	for addr, b := range m.brokers {
		if _, ok := m.want[addr]; !ok {
			b.forget = true
			b.retire()
			delete(m.brokers, addr)
			delete(m.handed, addr)
			m.metrics.connected.DeleteLabelValues(addr)
		}
	}
	for addr, filters := range m.want {
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
}

// Sync makes the subscriptions exactly bindings: while holding, it
// subscribes the new ones, unsubscribes those no longer given and leaves
// the others alone; while not, it only records them for the next Hold. It
// returns one Status per binding, in order: while holding, after every
// binding is decided or Config.ConnectTimeout has passed (or ctx ended),
// whichever is first; while not, at once, with no error for a valid
// binding (this controller does not connect: Check probes a broker).
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
	statuses, want := wanted(bindings)

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	m.want = want
	if !m.holding {
		m.mu.Unlock()
		return statuses, nil
	}
	m.apply()
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
			if !m.holding { // Hold ended meanwhile: no longer this controller's
				s.Err = nil
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

// wanted checks bindings: one Status each (ErrInvalidEvent, or nil), and
// the valid ones by broker and filter.
func wanted(bindings []Binding) ([]Status, map[string]map[string]map[target]struct{}) {
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
	return statuses, want
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
// when the Manager is shutting down or stop (the broker's retirement) is
// closed first.
func (m *Manager) startInvoke(stop <-chan struct{}) bool {
	select {
	case m.slots <- struct{}{}:
	case <-m.stopping:
		return false
	case <-stop:
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
