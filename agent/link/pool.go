package link

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/protocol"
)

// shared is what the links of one agent share: its identity, the outbox
// drain, which link holds a session with which controller, and the desired
// set last stored.
type shared struct {
	ids *keeper
	// outbox holds one token while a link drains the outbox.
	outbox chan struct{}
	// onDown, when set, is called when a link's session ends or its dial
	// fails (the Pool resolves names again).
	onDown func(*Link)

	mu      sync.Mutex
	changed chan struct{}    // closed and replaced when held changes
	held    map[string]*Link // controller id → the link with a session to it

	// desiredMu orders the links' stores of desired sets and deltas, so
	// that desired names what the state holds.
	desiredMu sync.Mutex
	desired   protocol.SetDigest // the digest (or hash) of the set last stored
}

func newShared(cfg Config) (*shared, error) {
	if cfg.State == nil || cfg.Executor == nil {
		return nil, errors.New("link: state and executor are required")
	}
	token, err := parseToken(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &shared{ids: newKeeper(cfg.State, token, log), outbox: make(chan struct{}, 1),
		changed: make(chan struct{}), held: map[string]*Link{}}, nil
}

// hold records that l has a session with controller id.
func (sh *shared) hold(id string, l *Link) {
	if id == "" {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.held[id] = l
	close(sh.changed)
	sh.changed = make(chan struct{})
}

// letGo records that l's session with controller id ended.
func (sh *shared) letGo(id string, l *Link) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if id == "" || sh.held[id] != l {
		return
	}
	delete(sh.held, id)
	close(sh.changed)
	sh.changed = make(chan struct{})
}

// heldBy returns the link other than l that has a session with controller
// id (nil if none), and a channel closed at the next change.
func (sh *shared) heldBy(id string, l *Link) (*Link, <-chan struct{}) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	other := sh.held[id]
	if other == l {
		other = nil
	}
	return other, sh.changed
}

// DefaultPort is the controllers' QUIC port, used for an address given
// without one.
const DefaultPort = "4433"

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Controllers are the controllers' QUIC addresses as the operator gave
	// them, host:port (DefaultPort when there is none). A host name that
	// resolves to several addresses (one name for a cluster) gets a link
	// per address.
	Controllers []string
	// Link is what every link is configured with; Addr and Controller are
	// set per link, and PacketConn must be nil.
	Link Config
	// Resolve looks a host name up (net.Resolver.LookupHost's contract);
	// nil: net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]string, error)
	// ResolveEvery is how often host names are resolved again; a link's
	// end also asks for it (at most once a second). Default 30s.
	ResolveEvery time.Duration
}

// Pool keeps a link with every controller of the agent: one per address
// its Controllers resolve to, all sharing the agent's identity (keeper),
// its outbox (one link drains it at a time) and its desired set. Names
// are resolved again every ResolveEvery and whenever a link goes down: a
// new address gets a link; a link whose address is no longer resolved
// ends once its session does (a failed resolution changes nothing).
type Pool struct {
	cfg  PoolConfig
	sh   *shared
	log  *slog.Logger
	soon chan struct{} // asks for a resolution

	mu       sync.Mutex
	ctx      context.Context // Run's, once it runs
	wg       sync.WaitGroup
	links    map[string]*Link  // by address dialled
	wanted   map[string]string // address dialled → as given, last resolved
	unsolved map[string]string // address as given → why it has no address
}

// minResolveGap is the shortest time between two resolutions asked for by
// links going down.
const minResolveGap = time.Second

// NewPool checks cfg and returns a Pool; it does no I/O.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if len(cfg.Controllers) == 0 {
		return nil, errors.New("link: no controller address")
	}
	for _, c := range cfg.Controllers {
		if _, _, err := splitAddr(c); err != nil {
			return nil, err
		}
	}
	if cfg.Link.PacketConn != nil {
		return nil, errors.New("link: a Pool's links dial with sockets of their own; Link.PacketConn must be nil")
	}
	if cfg.Resolve == nil {
		cfg.Resolve = net.DefaultResolver.LookupHost
	}
	if cfg.ResolveEvery <= 0 {
		cfg.ResolveEvery = 30 * time.Second
	}
	sh, err := newShared(cfg.Link)
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, sh: sh, log: cfg.Link.Logger, soon: make(chan struct{}, 1),
		links: map[string]*Link{}, wanted: map[string]string{}, unsolved: map[string]string{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	sh.onDown = func(*Link) {
		select {
		case p.soon <- struct{}{}:
		default:
		}
	}
	return p, nil
}

// splitAddr splits a controller address as given into host and port,
// DefaultPort when it has none.
func splitAddr(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		var aerr *net.AddrError
		if errors.As(err, &aerr) && aerr.Err == "missing port in address" {
			return addr, DefaultPort, nil
		}
		return "", "", fmt.Errorf("link: controller address %q: %w", addr, err)
	}
	if host == "" {
		return "", "", fmt.Errorf("link: controller address %q has no host", addr)
	}
	return host, port, nil
}

// Run keeps the links up until ctx is done, resolving names again. It
// returns ErrRefused (wrapped) when the agent is refused for good, else
// ctx's error, once every link has ended (each drains as Link.Run does).
func (p *Pool) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer p.wg.Wait()
	defer cancel()
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	retry := minResolveGap
	last := time.Time{}
	for {
		wait := p.cfg.ResolveEvery
		if p.resolve(ctx) {
			// A name that resolved to nothing has no link at all: try
			// again sooner than the period.
			wait, retry = min(retry, wait), min(retry*2, wait)
		} else {
			retry = minResolveGap
		}
		last = time.Now()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-p.sh.ids.failed:
			t.Stop()
			return p.sh.ids.err()
		case <-t.C:
		case <-p.soon:
			t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-p.sh.ids.failed:
				return p.sh.ids.err()
			case <-time.After(time.Until(last.Add(minResolveGap))):
			}
		}
	}
}

// resolve resolves every address given and makes the links follow; it
// reports whether a name resolved to no address and has no link.
func (p *Pool) resolve(ctx context.Context) (unsolved bool) {
	wanted := map[string]string{}
	why := map[string]string{}
	p.mu.Lock()
	previous := p.wanted
	p.mu.Unlock()
	for _, given := range p.cfg.Controllers {
		host, port, _ := splitAddr(given)
		if ip, err := netip.ParseAddr(host); err == nil {
			addWanted(wanted, net.JoinHostPort(ip.String(), port), given)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := p.cfg.Resolve(rctx, host)
		cancel()
		if err == nil && len(ips) == 0 {
			err = errors.New("no address")
		}
		if err != nil {
			// Keep what it resolved to before: a DNS outage must not
			// take down links to controllers that are still there.
			kept := false
			for addr, g := range previous {
				if g == given {
					addWanted(wanted, addr, given)
					kept = true
				}
			}
			if ctx.Err() == nil {
				p.log.Warn("resolving a controller address; keeping its links", "controller", given, "err", err, "links", kept)
			}
			if !kept {
				why[given] = "resolving: " + err.Error()
				unsolved = true
			}
			continue
		}
		for _, a := range oneFamily(ips) {
			addWanted(wanted, net.JoinHostPort(a.String(), port), given)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	p.wanted, p.unsolved = wanted, why
	p.sh.ids.setSilent(len(why))
	// Every new link counts in the refusal rule before any of them runs.
	var added []*Link
	for addr, given := range wanted {
		if l := p.links[addr]; l != nil {
			l.retire(false)
			continue
		}
		if _, ok := previous[addr]; !ok && len(previous) > 0 {
			p.log.Info("new controller address", "controller", given, "addr", addr)
		}
		if l := p.add(addr, given); l != nil {
			added = append(added, l)
		}
	}
	for _, l := range added {
		p.run(l)
	}
	for addr, l := range p.links {
		if _, ok := wanted[addr]; !ok && !l.retiring.Load() {
			p.log.Info("controller address no longer resolved; its link ends with its session", "controller", l.cfg.Controller, "addr", addr)
			l.retire(true)
		}
	}
	return unsolved
}

// oneFamily parses ips and keeps those of the first one's family (IPv4 or
// IPv6). The resolver returns them best first (RFC 6724: the family this
// host is likeliest to reach). A dual-stack controller has an address of
// each family, and two links to one controller would only take turns
// replacing each other's session; a cluster name's controllers all have
// one of each, so one family reaches them all.
func oneFamily(ips []string) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if len(out) > 0 && a.Is4() != out[0].Is4() {
			continue
		}
		out = append(out, a)
	}
	return out
}

// addWanted adds addr, given as given, unless another name got it first.
func addWanted(wanted map[string]string, addr, given string) {
	if _, ok := wanted[addr]; !ok {
		wanted[addr] = given
	}
}

// add makes a link to addr; the caller holds p.mu and runs it.
func (p *Pool) add(addr, given string) *Link {
	cfg := p.cfg.Link
	cfg.Addr, cfg.Controller = addr, given
	l, err := newLink(cfg, p.sh)
	if err != nil { // cfg was checked by NewPool
		p.log.Error("starting a controller link", "addr", addr, "err", err)
		return nil
	}
	p.links[addr] = l
	return l
}

// run runs l until it ends; the caller holds p.mu.
func (p *Pool) run(l *Link) {
	ctx, addr := p.ctx, l.cfg.Addr
	p.wg.Go(func() {
		err := l.Run(ctx)
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.links, addr)
		// Retired, but resolved again meanwhile: start over.
		if given, ok := p.wanted[addr]; ok && err == nil && ctx.Err() == nil {
			if l := p.add(addr, given); l != nil {
				p.run(l)
			}
		}
	})
}

// Kick wakes the outbox drain: new entries are waiting.
func (p *Pool) Kick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.Kick()
	}
}

// Connected reports whether a link is up.
func (p *Pool) Connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		if l.Connected() {
			return true
		}
	}
	return false
}

// Status lists the links, by address given then address dialled, and
// each address given that resolved to none, with why.
func (p *Pool) Status() []status.Link {
	p.mu.Lock()
	out := make([]status.Link, 0, len(p.links)+len(p.unsolved))
	for _, l := range p.links {
		out = append(out, l.Status())
	}
	for given, why := range p.unsolved {
		out = append(out, status.Link{Controller: given, LastError: why})
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b status.Link) int {
		return cmp.Or(cmp.Compare(a.Controller, b.Controller), cmp.Compare(a.Address, b.Address))
	})
	return out
}
