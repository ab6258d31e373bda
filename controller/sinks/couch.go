package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-kivik/kivik/v4"
	"github.com/go-kivik/kivik/v4/couchdb"
)

// Outcome is what a successful [Sender.Send] did.
type Outcome int

const (
	// Stored means the document was written now.
	Stored Outcome = iota + 1
	// AlreadyStored means a document with the activation's id was there
	// already (409 conflict): an earlier attempt delivered it.
	AlreadyStored
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case AlreadyStored:
		return "already stored"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Sender writes one delivery to its sink. [Couch] is the implementation;
// tests use fakes.
type Sender interface {
	Send(ctx context.Context, d Delivery) (Outcome, error)
}

var _ Sender = (*Couch)(nil)

// CouchConfig configures a [Couch]. The zero value is usable.
type CouchConfig struct {
	// Transport carries every request; nil means a transport of this package
	// (keep-alive, 32 idle connections per host, 5 s dial timeout).
	Transport http.RoundTripper
	// Timeout bounds each HTTP request; 0 means 10 s.
	Timeout time.Duration
}

// Couch writes deliveries to CouchDB databases with kivik. It keeps one
// client per (server, credentials) and remembers which databases exist, so
// that each database is created at most once per process. Safe for
// concurrent use.
type Couch struct {
	transport http.RoundTripper
	timeout   time.Duration

	mu      sync.Mutex
	clients map[target]*kivik.Client // key without db
	dbs     map[target]*database     // key with db
}

// database remembers that a database exists; its mutex makes concurrent
// first deliveries create it once.
type database struct {
	mu     sync.Mutex
	exists bool
}

// NewCouch returns a Couch. It does no I/O.
func NewCouch(cfg CouchConfig) *Couch {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second,
			ForceAttemptHTTP2:   true,
		}
	}
	return &Couch{
		transport: cfg.Transport,
		timeout:   cfg.Timeout,
		clients:   map[target]*kivik.Client{},
		dbs:       map[target]*database{},
	}
}

// Send stores [Document](d) in the database of d.Sink under the id
// d.ActivationID, creating the database first if this process has not seen
// it yet (an existing one is fine). A 409 conflict is [AlreadyStored].
//
// # Errors
//
// Invalid parameters wrap [ErrInvalidParams]; a failed request gives an
// error whose HTTPStatus method (see [kivik.HTTPStatus]) reports the status,
// 0 for a transport failure. No error contains the sink's credentials.
func (c *Couch) Send(ctx context.Context, d Delivery) (Outcome, error) {
	t, err := d.Sink.target()
	if err != nil {
		return 0, err
	}
	out, err := c.send(ctx, t, d)
	if err != nil {
		return 0, &sendError{status: kivik.HTTPStatus(err), msg: d.Sink.scrub(err.Error())}
	}
	return out, nil
}

func (c *Couch) send(ctx context.Context, t target, d Delivery) (Outcome, error) {
	client, err := c.client(t)
	if err != nil {
		return 0, err
	}
	if err := c.ensureDB(ctx, client, t, false); err != nil {
		return 0, err
	}
	doc := json.RawMessage(Document(d))
	_, err = client.DB(t.db).Put(ctx, d.ActivationID, doc)
	if kivik.HTTPStatus(err) == http.StatusNotFound {
		// The database went away since we created it (or our memory of it
		// is stale): create it again, once, and retry.
		if err := c.ensureDB(ctx, client, t, true); err != nil {
			return 0, err
		}
		_, err = client.DB(t.db).Put(ctx, d.ActivationID, doc)
	}
	switch {
	case err == nil:
		return Stored, nil
	case kivik.HTTPStatus(err) == http.StatusConflict:
		return AlreadyStored, nil
	}
	return 0, fmt.Errorf("put document %s in %s: %w", d.ActivationID, t.db, err)
}

func (c *Couch) client(t target) (*kivik.Client, error) {
	key := t
	key.db = ""
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	opts := []kivik.Option{
		couchdb.OptionHTTPClient(&http.Client{Transport: c.transport, Timeout: c.timeout}),
		couchdb.OptionNoRequestCompression(), // documents are small: gzip costs more than it saves
	}
	if t.username != "" || t.password != "" {
		opts = append(opts, couchdb.BasicAuth(t.username, t.password))
	}
	cl, err := kivik.New("couch", t.server, opts...) // no I/O with basic auth
	if err != nil {
		return nil, fmt.Errorf("couchdb client for %s: %w", t.server, err)
	}
	c.clients[key] = cl
	return cl, nil
}

// ensureDB creates t's database unless it is known to exist (again, when
// forget is set). "Already exists" (412) is success. 401 and 403 are taken to
// mean that this user may write to the database but not create it: the
// document write that follows gives the real answer.
func (c *Couch) ensureDB(ctx context.Context, client *kivik.Client, t target, forget bool) error {
	c.mu.Lock()
	db, ok := c.dbs[t]
	if !ok {
		db = &database{}
		c.dbs[t] = db
	}
	c.mu.Unlock()

	db.mu.Lock()
	defer db.mu.Unlock()
	if forget {
		db.exists = false
	}
	if db.exists {
		return nil
	}
	if err := client.CreateDB(ctx, t.db); err != nil {
		switch kivik.HTTPStatus(err) {
		case http.StatusPreconditionFailed, http.StatusUnauthorized, http.StatusForbidden:
		default:
			return fmt.Errorf("create database %s: %w", t.db, err)
		}
	}
	db.exists = true
	return nil
}

// Close closes the idle connections of every client.
func (c *Couch) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for k, cl := range c.clients {
		errs = append(errs, cl.Close())
		delete(c.clients, k)
	}
	if t, ok := c.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// sendError is a failed delivery with the credentials scrubbed from its
// message. It keeps the HTTP status for [kivik.HTTPStatus].
type sendError struct {
	status int
	msg    string
}

func (e *sendError) Error() string   { return e.msg }
func (e *sendError) HTTPStatus() int { return e.status }
