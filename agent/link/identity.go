package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/protocol"
)

// verdict is what a controller last answered a link's Hello, for the
// identity the agent holds now.
type verdict uint8

const (
	unanswered verdict = iota // no answer yet (or the controller cannot be reached)
	accepted
	refused // Error{Unauthorized}
)

// Errors of a session that a Link's Run tells apart.
var (
	// errRefusedHere: this link's controller refused the agent, and the
	// others have not all done so: retry later, keep the identity.
	errRefusedHere = errors.New("this controller refused the agent")
	// errRejoin: every controller refused the credential; the identity
	// was cleared to join again with the token at once.
	errRejoin = errors.New("every controller refused the credential; joining again with the token")
)

// keeper is the agent's one identity (agent id, credential, pinned
// controller key, in agent/state) as all its links share it, and the rule
// that decides when a refusal makes the agent give it up.
//
// Joining: with no identity and a join token, exactly one link at a time
// presents the token (it holds the join slot); the others wait until the
// identity is stored and then authenticate with the credential. A link
// whose controller refused the token does not present it again: it waits
// for the identity a link to another controller obtains. A single-use
// token is therefore spent once and never refused because a second link
// tried it too.
//
// Refusals: a controller that answers Error{Unauthorized} records a
// refused verdict for its link; any other end (a dial failure, a timeout,
// a closed connection) records nothing. The agent gives its identity up
// only when every link's latest verdict for it is refused (and every
// controller given has a link: a name that resolves to nothing is a
// controller without an answer): then it clears
// the identity and joins again with the token if it has one, or stops
// (ErrRefused). A link that has not had an answer (its controller is down,
// or the link is new) keeps the identity: a controller pointed at a wrong
// or new database refuses the agent, and must not make it forget the
// identity the right controllers still accept. Removal is cluster-wide
// (one store), so a removed agent is refused by every controller it can
// reach; it stops once each of its links has been refused.
type keeper struct {
	st    *state.State
	token *protocol.JoinToken // nil: no join token
	log   *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever gen, joiner or a verdict changes
	gen     uint64        // grows whenever the stored identity changes
	joiner  *Link         // the link presenting the join token, nil if none
	links   map[*Link]verdict
	// silent counts the controllers given that have no link (a name that
	// resolved to no address): like a link without an answer, each keeps
	// the identity.
	silent int
	last   error // the last refusal, for the fatal error's text
	fatal  error // set once: the agent was refused for good
	failed chan struct{}
}

// credentials is what one connection attempt presents.
type credentials struct {
	id      state.Identity // the stored identity; zero when joining
	pin     []byte         // the controller key fingerprint to pin
	gen     uint64
	joining bool
}

func newKeeper(st *state.State, token *protocol.JoinToken, log *slog.Logger) *keeper {
	return &keeper{st: st, token: token, log: log, changed: make(chan struct{}), links: map[*Link]verdict{}, failed: make(chan struct{})}
}

// hasIdentity reports whether id is a joined agent's.
func hasIdentity(id state.Identity) bool { return id.AgentID != "" && len(id.Credential) > 0 }

// signal wakes every waiter; the caller holds k.mu.
func (k *keeper) signal() {
	close(k.changed)
	k.changed = make(chan struct{})
}

// add counts l among the links whose verdicts decide.
func (k *keeper) add(l *Link) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.links[l] = unanswered
}

// setSilent records how many controllers given have no link.
func (k *keeper) setSilent(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.silent = n
}

// remove forgets l (its address vanished, or it stopped); the links left
// may now all have refused.
func (k *keeper) remove(l *Link) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.links, l)
	if k.joiner == l {
		k.joiner = nil
	}
	k.signal()
	if k.fatal == nil {
		if _, err := k.decide(); err != nil && !errors.Is(err, ErrRefused) {
			k.log.Error("clearing the refused identity", "err", err)
		}
	}
}

// err returns the fatal error, once the agent was refused for good.
func (k *keeper) err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fatal
}

// acquire waits until l may try a connection: with the stored identity,
// or as the one link presenting the join token. wait, when set, is called
// once before waiting for another link's join.
func (k *keeper) acquire(ctx context.Context, l *Link, wait func()) (credentials, error) {
	for {
		k.mu.Lock()
		if k.fatal != nil {
			k.mu.Unlock()
			return credentials{}, k.fatal
		}
		id, err := k.st.Identity()
		if err != nil {
			k.mu.Unlock()
			return credentials{}, err
		}
		if hasIdentity(id) {
			c := credentials{id: id, pin: id.Controller, gen: k.gen}
			k.mu.Unlock()
			return c, nil
		}
		if k.token == nil {
			k.fail(fmt.Errorf("%w: the agent has no identity yet and no join token was given", ErrRefused))
			k.mu.Unlock()
			return credentials{}, k.fatal
		}
		if k.joiner == nil && k.links[l] != refused {
			k.joiner = l
			c := credentials{pin: k.token.Fingerprint[:], gen: k.gen, joining: true}
			k.mu.Unlock()
			return c, nil
		}
		ch := k.changed
		k.mu.Unlock()
		if wait != nil {
			wait()
			wait = nil
		}
		select {
		case <-ctx.Done():
			return credentials{}, ctx.Err()
		case <-ch:
		}
	}
}

// release ends l's hold on the join slot, if it has it.
func (k *keeper) release(l *Link) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.joiner == l {
		k.joiner = nil
		k.signal()
	}
}

// joined stores the identity a Welcome issued to l's join.
func (k *keeper) joined(c credentials, l *Link, agentID string, credential []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.joiner == l {
		k.joiner = nil
	}
	if err := k.st.SetIdentity(state.Identity{AgentID: agentID, Credential: credential, Controller: c.pin}); err != nil {
		k.signal()
		return fmt.Errorf("saving identity: %w", err)
	}
	k.newIdentity()
	k.links[l] = accepted
	return nil
}

// newIdentity forgets the verdicts given to the previous identity; the
// caller holds k.mu.
func (k *keeper) newIdentity() {
	k.gen++
	for m := range k.links {
		k.links[m] = unanswered
	}
	k.signal()
}

// accepted records that l's controller welcomed the identity of c.
func (k *keeper) accepted(c credentials, l *Link) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.links[l]; ok && c.gen == k.gen {
		k.links[l] = accepted
		k.signal()
	}
}

// refused records that l's controller refused c (why), and decides. It
// returns errRejoin when the identity was cleared to join again at once,
// ErrRefused (wrapped) when the agent is refused for good, and
// errRefusedHere when only this link should wait and retry.
func (k *keeper) refused(c credentials, l *Link, why error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fatal != nil {
		return k.fatal
	}
	if k.joiner == l {
		k.joiner = nil
	}
	if c.gen != k.gen {
		// The identity changed while this attempt ran: try the new one.
		k.signal()
		return fmt.Errorf("%w: %v", errRejoin, why)
	}
	if _, ok := k.links[l]; ok {
		k.links[l] = refused
	}
	k.last = why
	k.signal()
	rejoin, err := k.decide()
	switch {
	case err != nil:
		return err
	case rejoin:
		return fmt.Errorf("%w: %v", errRejoin, why)
	}
	return fmt.Errorf("%w: %v", errRefusedHere, why)
}

// decide applies the rule once every link's latest verdict is refused:
// clear the identity to join again (rejoin true), or fail for good. The
// caller holds k.mu.
func (k *keeper) decide() (rejoin bool, err error) {
	if len(k.links) == 0 || k.silent > 0 {
		return false, nil
	}
	for _, v := range k.links {
		if v != refused {
			return false, nil
		}
	}
	id, err := k.st.Identity()
	if err != nil {
		return false, err
	}
	switch {
	case !hasIdentity(id):
		k.fail(fmt.Errorf("%w: every controller refused the join token: %v", ErrRefused, k.last))
		return false, k.fatal
	case k.token == nil:
		k.fail(fmt.Errorf("%w: every controller refused this agent's credential (it was removed, or they do not know it) and no join token was given: %v", ErrRefused, k.last))
		return false, k.fatal
	}
	// An operator removed the agent, or every controller forgot it (a new
	// database): try the join token. A spent single-use token is refused
	// by every controller in turn, and the agent stops.
	k.log.Warn("every controller refused this agent's credential (it was removed, or they do not know it); joining again with the token", "err", k.last)
	if err := k.st.SetIdentity(state.Identity{}); err != nil {
		return false, fmt.Errorf("clearing the identity: %w", err)
	}
	k.newIdentity()
	return true, nil
}

// fail records the fatal error and wakes everyone; the caller holds k.mu.
func (k *keeper) fail(err error) {
	if k.fatal != nil {
		return
	}
	k.fatal = err
	k.log.Error("giving up", "err", err)
	close(k.failed)
	k.signal()
}
