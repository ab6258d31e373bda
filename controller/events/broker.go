package events

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// target is a function a message invokes.
type target struct{ module, function string }

// subscription is one topic filter on one broker and the functions bound to it.
type subscription struct {
	targets map[target]struct{}
	acked   bool  // the broker granted it on the current connection
	err     error // the broker refused it on the current connection
}

// broker is the one connection to one broker shared by all its bindings.
// Every field below done is guarded by Manager.mu.
type broker struct {
	m        *Manager
	addr     string // host:port
	clientID string
	stop     chan struct{} // closed by retire
	done     chan struct{} // closed when run returns

	subs      map[string]*subscription // by filter; nil once retired
	forget    bool                     // end the broker's session once retired: no binding uses it any more
	connected bool
	cur       mqtt.Client // the connected client, nil while disconnected
	gen       int         // incremented on every (re)connect; SUBACKs of older connections are ignored
	lastErr   error
}

func newBroker(m *Manager, addr string) *broker {
	return &broker{
		m:        m,
		addr:     addr,
		clientID: ClientID(m.cfg.Cluster, addr),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		subs:     map[string]*subscription{},
	}
}

// retire stops the broker's loop and routes nothing more. Call with m.mu held.
func (b *broker) retire() {
	close(b.stop)
	b.subs = nil
}

// setRoutes makes the broker's filters exactly filters. Call with m.mu held;
// the (un)subscriptions are sent from a goroutine.
func (b *broker) setRoutes(filters map[string]map[target]struct{}) {
	var add, drop []string
	for f := range b.subs {
		if _, ok := filters[f]; !ok {
			delete(b.subs, f)
			drop = append(drop, f)
		}
	}
	for f, ts := range filters {
		if s, ok := b.subs[f]; ok {
			s.targets = ts
			continue
		}
		b.subs[f] = &subscription{targets: ts}
		add = append(add, f)
	}
	c, gen := b.client(), b.gen
	if c == nil || (len(add) == 0 && len(drop) == 0) {
		return // not connected: onConnect subscribes everything
	}
	go func() {
		if len(drop) > 0 {
			c.Unsubscribe(drop...) // routing already ignores these filters; the UNSUBACK does not matter
		}
		b.subscribe(c, gen, add)
	}()
}

// client is the connected client, or nil. Call with m.mu held.
func (b *broker) client() mqtt.Client {
	if !b.connected {
		return nil
	}
	return b.cur
}

// subscribe subscribes filters with QoS 1 and records the broker's answers,
// unless the connection changed meanwhile (onConnect subscribes again then).
func (b *broker) subscribe(c mqtt.Client, gen int, filters []string) {
	if len(filters) == 0 {
		return
	}
	req := make(map[string]byte, len(filters))
	for _, f := range filters {
		req[f] = 1
	}
	tok := c.SubscribeMultiple(req, nil)
	ok := tok.WaitTimeout(b.m.cfg.ConnectTimeout)
	var granted map[string]byte
	if st, isSub := tok.(*mqtt.SubscribeToken); isSub && ok && tok.Error() == nil {
		granted = st.Result()
	}
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	if b.gen != gen || b.subs == nil {
		return
	}
	for _, f := range filters {
		s := b.subs[f]
		if s == nil {
			continue
		}
		switch code, answered := granted[f]; {
		case !ok:
			s.err = fmt.Errorf("%w: %s: no SUBACK for %q within %s", ErrSubscribe, b.addr, f, b.m.cfg.ConnectTimeout)
		case tok.Error() != nil:
			s.err = fmt.Errorf("%w: %s: %q: %w", ErrSubscribe, b.addr, f, tok.Error())
		case !answered || code > 2:
			s.err = fmt.Errorf("%w: %s refused %q", ErrSubscribe, b.addr, f)
		default:
			s.acked, s.err = true, nil
		}
		if s.err != nil {
			b.m.log.Warn("events: subscription failed", "broker", b.addr, "topic", f, "err", s.err)
		}
	}
	b.m.notify()
}

// state tells Sync whether the binding on filter is decided, and how.
// Call with m.mu held.
func (b *broker) state(filter string) (decided bool, err error) {
	s := b.subs[filter]
	switch {
	case s == nil:
		return true, fmt.Errorf("%w: %s was removed by a later Sync", ErrNotConnected, b.addr)
	case s.err != nil:
		return true, s.err
	case b.connected && s.acked:
		return true, nil
	case !b.connected && b.lastErr != nil:
		return true, fmt.Errorf("%w: %s: %w", ErrNotConnected, b.addr, b.lastErr)
	}
	return false, nil
}

// disconnectQuiesce is how long a disconnect waits for the DISCONNECT
// packet to be written. Acknowledgements handed to paho before it are
// written first (one writer, in order), so a clean stop acknowledges
// every message handed to an invocation; paho returns as soon as it is
// written, so this is only a bound for a stuck connection.
const disconnectQuiesce = 2000 // ms

// run connects, retrying with exponential backoff until the first success;
// from then on paho reconnects by itself (onConnect re-subscribes). It
// disconnects when the broker is retired, and then, when the broker is
// forgotten, ends its session.
func (b *broker) run() {
	defer close(b.done)
	backoff := 500 * time.Millisecond
	for {
		c := mqtt.NewClient(b.options())
		tok := c.Connect()
		tok.Wait() // bounded by the connect timeout in options
		if err := tok.Error(); err == nil {
			<-b.stop
			c.Disconnect(disconnectQuiesce)
			b.m.mu.Lock()
			forget := b.forget
			b.m.mu.Unlock()
			if forget {
				b.endSession()
			}
			return
		} else {
			b.m.mu.Lock()
			b.lastErr = err
			b.m.notify()
			b.m.mu.Unlock()
			b.m.log.Warn("events: cannot connect to MQTT broker; retrying", "broker", b.addr, "err", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, b.m.cfg.MaxReconnectInterval)
	}
}

// endSession connects once with a clean session under the session's
// client id, which makes the broker drop the session (its subscriptions
// and the messages it queued), then disconnects. Best effort: a broker
// that does not answer keeps the session until its own expiry.
func (b *broker) endSession() {
	o := b.options().SetCleanSession(true).SetAutoReconnect(false).
		SetOnConnectHandler(nil).SetConnectionLostHandler(nil).SetDefaultPublishHandler(nil)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	tok.Wait()
	if err := tok.Error(); err != nil {
		b.m.log.Warn("events: could not end the MQTT session of a broker no binding uses", "broker", b.addr, "client_id", b.clientID, "err", err)
		return
	}
	c.Disconnect(disconnectQuiesce)
	b.m.log.Info("events: ended the MQTT session of a broker no binding uses", "broker", b.addr, "client_id", b.clientID)
}

func (b *broker) options() *mqtt.ClientOptions {
	cfg := &b.m.cfg
	return mqtt.NewClientOptions().
		AddBroker("tcp://" + b.addr).
		SetClientID(b.clientID).
		// The cluster's session outlives its connections: the broker keeps
		// QoS 1 messages for it while no controller holds it. onConnect
		// subscribes again all the same (the broker may have lost it).
		SetCleanSession(false).
		SetAutoAckDisabled(true). // onMessage acknowledges once a message is handed to an invocation
		SetProtocolVersion(4).    // MQTT 3.1.1
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetConnectRetry(false). // run retries the first connection, so Sync can report its error
		SetAutoReconnect(true).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetOrderMatters(true). // onMessage only takes a slot: blocking there is the backpressure
		SetDefaultPublishHandler(b.onMessage).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(b.onLost)
}

func (b *broker) onConnect(c mqtt.Client) {
	b.m.mu.Lock()
	if b.subs == nil { // retired while connecting
		b.m.mu.Unlock()
		return
	}
	b.connected, b.cur, b.lastErr = true, c, nil
	b.gen++
	gen := b.gen
	for _, s := range b.subs {
		s.acked, s.err = false, nil
	}
	filters := slices.Collect(maps.Keys(b.subs))
	b.m.metrics.connected.WithLabelValues(b.addr).Set(1)
	b.m.notify()
	b.m.mu.Unlock()
	b.m.log.Info("events: connected to MQTT broker", "broker", b.addr, "client_id", b.clientID, "topics", len(filters))
	b.subscribe(c, gen, filters)
}

func (b *broker) onLost(_ mqtt.Client, err error) {
	b.m.mu.Lock()
	if b.subs == nil {
		b.m.mu.Unlock()
		return
	}
	b.connected, b.cur, b.lastErr = false, nil, err
	for _, s := range b.subs {
		s.acked = false
	}
	b.m.metrics.connected.WithLabelValues(b.addr).Set(0)
	b.m.notify()
	b.m.mu.Unlock()
	b.m.log.Warn("events: lost the MQTT broker; reconnecting", "broker", b.addr, "err", err)
}

// onMessage runs on paho's router goroutine, one message at a time. It
// acknowledges a message once it is handed to an invocation slot (for
// each function bound to it; once at least one took it), or at once when
// nothing is to run (no route, not JSON, already handed). A message that
// came while the broker is being retired, before any slot took it, is
// not acknowledged: the broker sends it again to the session's next
// connection.
func (b *broker) onMessage(_ mqtt.Client, msg mqtt.Message) {
	topic := msg.Topic()
	payload := msg.Payload()
	d := digestOf(topic, payload)
	b.m.mu.Lock()
	if b.subs == nil { // retired: left to the session's next connection
		b.m.mu.Unlock()
		return
	}
	var targets []target
	for f, s := range b.subs {
		if matchTopic(f, topic) {
			for t := range s.targets {
				if !slices.Contains(targets, t) {
					targets = append(targets, t)
				}
			}
		}
	}
	recent := b.m.handed[b.addr]
	repeat := msg.Duplicate() && recent != nil && recent.has(msg.MessageID(), d)
	b.m.mu.Unlock()
	if len(targets) == 0 {
		msg.Ack()
		return // unsubscribed since the broker sent it (or by a session before this controller's)
	}
	if repeat {
		b.m.metrics.messages.WithLabelValues(resultRepeat).Inc()
		b.m.log.Info("events: MQTT message sent again after a lost acknowledgement; already invoked, not again", "topic", topic, "broker", b.addr, "message_id", msg.MessageID())
		msg.Ack()
		return
	}
	if !json.Valid(payload) {
		b.m.metrics.messages.WithLabelValues(resultNotJSON).Inc()
		for _, t := range targets {
			b.m.log.Warn("events: MQTT message is not JSON; not invoking", "module", t.module, "function", t.function, "topic", topic, "broker", b.addr, "bytes", len(payload))
		}
		msg.Ack()
		return
	}
	handed := 0
	for _, t := range targets {
		if !b.m.startInvoke(b.stop) {
			break
		}
		handed++
		go b.m.invoke(t, topic, payload)
	}
	if handed == 0 {
		return // stopping: left to the session's next connection
	}
	if handed < len(targets) {
		b.m.log.Warn("events: stopping before every function bound to an MQTT message got it; the others miss it (at most once)", "topic", topic, "broker", b.addr, "invoked", handed, "bound", len(targets))
	}
	if msg.Qos() > 0 {
		b.m.mu.Lock()
		if b.m.handed[b.addr] == nil {
			b.m.handed[b.addr] = newRecentSet()
		}
		b.m.handed[b.addr].add(msg.MessageID(), d)
		b.m.mu.Unlock()
	}
	msg.Ack()
}
