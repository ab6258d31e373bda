package events

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Check tries bindings without holding them, for a controller that is not
// the one connected (another holds the cluster's "events" lease): per
// broker, one short connection with a clean session under a client id of
// its own, which subscribes the bindings' filters, unsubscribes them and
// disconnects. So the API can answer FunLess's 207 for a broker that is
// down or refuses a topic whichever controller takes the request. It
// never touches the cluster's session, invokes nothing, and waits at most
// Config.ConnectTimeout per broker (brokers are tried at once) or until
// ctx ends. It returns one Status per binding, in order, as Sync does.
func (m *Manager) Check(ctx context.Context, bindings []Binding) []Status {
	statuses, want := wanted(bindings)
	results := map[string]map[string]error{} // broker -> filter -> outcome
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, filters := range want {
		wg.Go(func() {
			res := m.checkBroker(ctx, addr, filters)
			mu.Lock()
			results[addr] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := range statuses {
		s := &statuses[i]
		if s.Err == nil {
			s.Err = results[s.Broker()][s.Topic]
		}
	}
	return statuses
}

// checkBroker connects to addr, subscribes filters and reports each one's
// outcome.
func (m *Manager) checkBroker(ctx context.Context, addr string, filters map[string]map[target]struct{}) map[string]error {
	out := map[string]error{}
	fail := func(err error) map[string]error {
		for f := range filters {
			out[f] = err
		}
		return out
	}
	var nonce [4]byte
	rand.Read(nonce[:])
	sum := sha256.Sum256([]byte(m.cfg.Instance + "\x00" + addr))
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID("wisp-chk-" + hex.EncodeToString(sum[:3]) + hex.EncodeToString(nonce[:])).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(m.cfg.ConnectTimeout).
		SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {}) // the holder's session gets its own copy
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !waitToken(ctx, tok, m.cfg) {
		return fail(fmt.Errorf("%w: %s: no connection within %s", ErrNotConnected, addr, m.cfg.ConnectTimeout))
	}
	if err := tok.Error(); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrNotConnected, addr, err))
	}
	defer c.Disconnect(250)
	req := make(map[string]byte, len(filters))
	for f := range filters {
		req[f] = 1
	}
	sub := c.SubscribeMultiple(req, nil)
	if !waitToken(ctx, sub, m.cfg) {
		return fail(fmt.Errorf("%w: %s: no SUBACK within %s", ErrSubscribe, addr, m.cfg.ConnectTimeout))
	}
	if err := sub.Error(); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrSubscribe, addr, err))
	}
	var granted map[string]byte
	if st, ok := sub.(*mqtt.SubscribeToken); ok {
		granted = st.Result()
	}
	var drop []string
	for f := range filters {
		if code, ok := granted[f]; !ok || code > 2 {
			out[f] = fmt.Errorf("%w: %s refused %q", ErrSubscribe, addr, f)
			continue
		}
		out[f] = nil
		drop = append(drop, f)
	}
	if len(drop) > 0 {
		waitToken(ctx, c.Unsubscribe(drop...), m.cfg)
	}
	return out
}

// waitToken waits for tok until Config.ConnectTimeout or ctx's end; it
// reports whether tok completed.
func waitToken(ctx context.Context, tok mqtt.Token, cfg Config) bool {
	select {
	case <-tok.Done():
		return true
	case <-ctx.Done():
		return false
	case <-time.After(cfg.ConnectTimeout):
		return false
	}
}
