// Package health answers the two probes both servers serve, unauthenticated:
//
//   - GET /healthz (live): the process serves HTTP. Always 200 "ok".
//   - GET /readyz (ready): the server can do its work. 200 "ok", or 503
//     "not ready: <reason>" with a short fixed reason ("store unreachable",
//     "starting", "stopping", "no controller link").
//
// What "ready" means is each server's business (controller/server and
// agent/node say it); this package only shapes the answers and caches
// checks that cost I/O (Cached: a Postgres ping at most once a second,
// however many probes arrive).
//
// The answers say ok or not ok and why in a few words, nothing more: no
// version, no configuration, no error text (an error can name a host or a
// user), so they are safe on a port anyone can reach. A probe costs no
// allocation beyond what the HTTP server itself makes for a request.
//
// It imports only the standard library, so both binaries link it.
package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The probe paths.
const (
	LivePath  = "/healthz"
	ReadyPath = "/readyz"
)

// Reasons a server gives for not being ready. Each is a constant: an answer
// never carries an error's text.
const (
	ReasonStarting          = "starting"
	ReasonStopping          = "stopping"
	ReasonStoreUnreachable  = "store unreachable"
	ReasonNoControllerLink  = "no controller link"
	ReasonRuntimeDown       = "runtime not running"
	ReasonStateClosed       = "state not open"
	okBody                  = "ok\n"
	notReadyPrefix          = "not ready: "
	contentType             = "text/plain; charset=utf-8"
	cacheControl            = "no-store"
	defaultCacheTTL         = time.Second
	defaultCheckTimeout     = 2 * time.Second
	maxReasonBytesInAnswers = 64
)

// Ready reports why a server is not ready, or "" when it is. It must be
// cheap (no I/O but through a Cached) and return one of the constant
// reasons above, or another short constant string.
type Ready func(ctx context.Context) string

// Cached runs a check that costs I/O (a database ping) at most once per
// TTL, with a timeout, and answers every other call from the last result:
// a storm of probes makes at most one check per TTL. Concurrent callers
// that find the result stale wait for the one check in flight. Safe for
// concurrent use.
type Cached struct {
	check   func(context.Context) error
	reason  string
	ttl     time.Duration
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	at   time.Time // when last was decided; zero: never
	last string    // "" or reason
}

// CachedConfig configures a Cached.
type CachedConfig struct {
	// Check is the check; an error means not ready.
	Check func(context.Context) error
	// Reason is what Reason answers while Check fails.
	Reason string
	// TTL is how long a result is kept. Default 1s.
	TTL time.Duration
	// Timeout bounds one Check. Default 2s.
	Timeout time.Duration
	// Logger, when set, logs each change of state, with the error (the
	// operator's log may say what the answer must not).
	Logger *slog.Logger
}

// NewCached returns a Cached; it does no I/O.
func NewCached(cfg CachedConfig) *Cached {
	c := &Cached{check: cfg.Check, reason: cfg.Reason, ttl: cfg.TTL, timeout: cfg.Timeout, log: cfg.Logger}
	if c.ttl <= 0 {
		c.ttl = defaultCacheTTL
	}
	if c.timeout <= 0 {
		c.timeout = defaultCheckTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Reason runs the check if its last result is older than the TTL and
// returns "" (it passed) or the configured reason.
func (c *Cached) Reason(ctx context.Context) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.last
	}
	// The check runs on a context of its own: a probe that gives up must
	// not make the result "not ready" for everyone else.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	err := c.check(cctx)
	cancel()
	next := ""
	if err != nil {
		next = c.reason
	}
	if next != c.last || c.at.IsZero() {
		if err != nil {
			c.log.Warn("readiness check failing", "reason", c.reason, "err", err)
		} else if !c.at.IsZero() {
			c.log.Info("readiness check passing again", "after", c.reason)
		}
	}
	c.last, c.at = next, time.Now()
	return next
}

// Answer is the status and the body pieces of a probe's answer for reason
// ("" is ok). The body is prefix + reason + "\n" (prefix and reason empty
// when ok), written in pieces so that no answer allocates.
func Answer(reason string) (status int, prefix, body string) {
	if reason == "" {
		return http.StatusOK, "", okBody
	}
	if len(reason) > maxReasonBytesInAnswers {
		reason = reason[:maxReasonBytesInAnswers]
	}
	return http.StatusServiceUnavailable, notReadyPrefix, reason
}

// Register adds GET /healthz and GET /readyz to mux. ready may be nil
// (always ready once serving).
func Register(mux *http.ServeMux, ready Ready) {
	mux.HandleFunc("GET "+LivePath, func(w http.ResponseWriter, _ *http.Request) { write(w, "") })
	mux.HandleFunc("GET "+ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		reason := ""
		if ready != nil {
			reason = ready(r.Context())
		}
		write(w, reason)
	})
}

// Header values, shared so that setting them allocates nothing.
var (
	contentTypeValue  = []string{contentType}
	cacheControlValue = []string{cacheControl}
)

func write(w http.ResponseWriter, reason string) {
	status, prefix, body := Answer(reason)
	h := w.Header()
	h["Content-Type"] = contentTypeValue
	h["Cache-Control"] = cacheControlValue
	w.WriteHeader(status)
	if prefix != "" {
		io.WriteString(w, prefix)
		io.WriteString(w, body)
		io.WriteString(w, "\n")
		return
	}
	io.WriteString(w, body)
}

// ContentType and CacheControl are the headers every answer carries (for
// servers that do not use Register).
const (
	ContentType  = contentType
	CacheControl = cacheControl
)

// Get is the client side, for the binaries' healthcheck commands: it GETs
// url with client and returns nil on 200, else an error with the status
// and the first line of the body.
func Get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return &NotOKError{Status: resp.StatusCode, Body: firstLine(string(b))}
	}
	return nil
}

// NotOKError is a probe that answered something else than 200.
type NotOKError struct {
	Status int
	Body   string
}

func (e *NotOKError) Error() string {
	return strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + ": " + e.Body
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return s[:i]
		}
	}
	return s
}

// LocalURL is the URL of path on a server of this machine that listens on
// listen (host:port as the servers' settings take it): a wildcard or empty
// host becomes loopback.
func LocalURL(scheme, listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + path, nil
}

// Wait is Get repeated every 200ms until it succeeds or ctx is done (then
// it returns the last failure): what a healthcheck command does, so that
// one started together with its server waits for it to serve.
func Wait(ctx context.Context, client *http.Client, url string) error {
	for {
		err := Get(ctx, client, url)
		if err == nil {
			return nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
