// Package authlimit slows down token guessing: it counts failed
// authentications per client and, once a client has failed too often,
// refuses its next attempts before any token is looked up (HTTP 429 with
// Retry-After), while every other client is served as usual.
//
// Each client has a bucket of Burst failures that refills at one failure
// per Refill. A client is an IPv4 address, or an IPv6 /64 (one host
// usually owns a whole /64, so rotating addresses within it gains nothing).
// Successful attempts cost nothing. At most Clients buckets are kept, the
// least recently used evicted first; an evicted client starts afresh, so
// an attacker must spread guesses over that many networks to gain
// anything, each of them held to the same rate.
//
// It imports only the standard library and cache, so both binaries may
// link it.
package authlimit

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/wispfn/wisp/cache"
)

// Config tunes a Limiter; zero fields take the defaults.
type Config struct {
	// Burst is how many failures a client may make in a row. Default 20.
	Burst int
	// Refill is the time it takes a client to earn back one failure.
	// Default 1s.
	Refill time.Duration
	// Clients bounds the clients remembered. Default 65,536 (about 6 MB).
	Clients int
}

// Limiter counts failures per client. Safe for concurrent use. The zero
// value is not usable; a nil *Limiter allows everything.
type Limiter struct {
	burst   float64
	refill  time.Duration
	now     func() time.Time
	mu      sync.Mutex // makes a bucket's read-modify-write atomic
	buckets *cache.LRU[netip.Prefix, *bucket]
}

type bucket struct {
	tokens float64 // failures the client may still make
	at     time.Time
}

// New returns a Limiter.
func New(cfg Config) *Limiter {
	if cfg.Burst <= 0 {
		cfg.Burst = 20
	}
	if cfg.Refill <= 0 {
		cfg.Refill = time.Second
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 1 << 16
	}
	return &Limiter{
		burst:   float64(cfg.Burst),
		refill:  cfg.Refill,
		now:     time.Now,
		buckets: cache.NewLRU[netip.Prefix, *bucket](cache.Limits{Entries: cfg.Clients}, nil),
	}
}

// Client is the key a remote address counts under: the address itself for
// IPv4 (and IPv4-mapped IPv6), its /64 for IPv6. An address that does not
// parse counts under the zero prefix, shared by all such addresses.
func Client(addr string) netip.Prefix {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(addr); err2 == nil {
			ip = ap.Addr()
		} else {
			return netip.Prefix{}
		}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Allow reports whether the client at addr may try to authenticate now
// and, if not, how long until it may.
func (l *Limiter) Allow(addr string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets.Get(Client(addr))
	if !ok {
		return true, 0
	}
	l.top(b)
	if b.tokens >= 1 {
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) * float64(l.refill)))
	return false, wait
}

// Fail records a failed authentication by the client at addr.
func (l *Limiter) Fail(addr string) {
	if l == nil {
		return
	}
	key := Client(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = &bucket{tokens: l.burst, at: l.now()}
		l.buckets.Add(key, b, 1)
	}
	l.top(b)
	b.tokens = max(b.tokens-1, 0)
}

// top refills b for the time since it was last seen.
func (l *Limiter) top(b *bucket) {
	now := l.now()
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.refill))
	}
	b.at = now
}
