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

// Result is what became of one delivery of a [Sender.SendBatch]: an
// Outcome when Err is nil.
type Result struct {
	Outcome Outcome
	Err     error
}

// Sender writes deliveries to their sinks. [Couch] is the implementation;
// tests use fakes.
type Sender interface {
	// Send writes one delivery.
	Send(ctx context.Context, d Delivery) (Outcome, error)
	// SendBatch writes several, as few requests as it can, and returns one
	// Result per delivery, in the order of ds. The [Worker] passes only
	// deliveries to one sink target (same server, database and
	// credentials), at most Config.BatchSize of them.
	SendBatch(ctx context.Context, ds []Delivery) []Result
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
// error whose HTTPStatus method (see [kivik.HTTPStatus]) reports the status
// (kivik reports a transport failure, such as a refused connection, as 502).
// No error contains the sink's credentials.
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

// SendBatch stores the documents of ds with CouchDB's _bulk_docs, one
// request per sink target (server, database and credentials) among them,
// creating each database first as [Couch.Send] does, and returns one Result
// per delivery, in the order of ds. The caller bounds how many it passes.
//
// # Notes
//
//   - A document the server reports as a conflict is [AlreadyStored]; any
//     other error the server reports for one document fails that delivery
//     only.
//   - A request that fails as a whole (no connection, 401, 5xx) fails every
//     delivery of its target, with the same error.
//   - A request the server rejects as malformed or too large (400, 413, 417)
//     is repeated one document at a time, so that one document the server
//     will not take (pouchdb-server and CouchDB reject the whole
//     _bulk_docs request for an illegal _id) cannot hold back the others.
//
// # Errors
//
// As for [Couch.Send]: invalid parameters wrap [ErrInvalidParams], other
// errors report the HTTP status through HTTPStatus and none contains the
// sink's credentials. For an error the server gave for one document of a
// 201 response, kivik reports the status 500.
func (c *Couch) SendBatch(ctx context.Context, ds []Delivery) []Result {
	res := make([]Result, len(ds))
	groups := map[target][]int{} // positions in ds
	var order []target
	for i, d := range ds {
		t, err := d.Sink.target()
		if err != nil {
			res[i].Err = err
			continue
		}
		if _, ok := groups[t]; !ok {
			order = append(order, t)
		}
		groups[t] = append(groups[t], i)
	}
	for _, t := range order {
		pos := groups[t]
		batch := make([]Delivery, len(pos))
		for j, i := range pos {
			batch[j] = ds[i]
		}
		for j, r := range c.sendBatch(ctx, t, batch) {
			d := ds[pos[j]]
			if r.Err != nil {
				r.Err = &sendError{status: kivik.HTTPStatus(r.Err), msg: d.Sink.scrub(r.Err.Error())}
			}
			res[pos[j]] = r
		}
	}
	return res
}

// sendBatch writes ds, all to t, in one _bulk_docs request.
func (c *Couch) sendBatch(ctx context.Context, t target, ds []Delivery) []Result {
	res := make([]Result, len(ds))
	all := func(err error) []Result {
		for i := range res {
			res[i] = Result{Err: err}
		}
		return res
	}
	client, err := c.client(t)
	if err != nil {
		return all(err)
	}
	if err := c.ensureDB(ctx, client, t, false); err != nil {
		return all(err)
	}
	docs := make([]any, len(ds))
	for i, d := range ds {
		docs[i] = bulkDocument(d)
	}
	db := client.DB(t.db)
	rs, err := db.BulkDocs(ctx, docs)
	if kivik.HTTPStatus(err) == http.StatusNotFound {
		// As in send: the database went away; create it again, once.
		if err := c.ensureDB(ctx, client, t, true); err != nil {
			return all(err)
		}
		rs, err = db.BulkDocs(ctx, docs)
	}
	if err != nil {
		switch kivik.HTTPStatus(err) {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusExpectationFailed:
			if len(ds) > 1 {
				for i, d := range ds {
					res[i].Outcome, res[i].Err = c.send(ctx, t, d)
				}
				return res
			}
		}
		return all(fmt.Errorf("bulk write of %d documents to %s: %w", len(ds), t.db, err))
	}
	if len(rs) != len(ds) {
		return all(fmt.Errorf("bulk write of %d documents to %s: the server returned %d results", len(ds), t.db, len(rs)))
	}
	// CouchDB answers in the order of the request; the ids are checked
	// anyway, as a mismatch would mark the wrong deliveries done.
	for i, r := range rs {
		switch {
		case r.ID != ds[i].ActivationID:
			res[i].Err = fmt.Errorf("bulk write to %s: result %d is for document %q, not %s", t.db, i, r.ID, ds[i].ActivationID)
		case r.Error == nil:
			res[i].Outcome = Stored
		case kivik.HTTPStatus(r.Error) == http.StatusConflict:
			res[i].Outcome = AlreadyStored
		default:
			res[i].Err = fmt.Errorf("put document %s in %s: %w", ds[i].ActivationID, t.db, r.Error)
		}
	}
	return res
}

// bulkDocument is [Document](d) with its _id, which _bulk_docs takes in the
// body.
func bulkDocument(d Delivery) json.RawMessage {
	doc := Document(d) // an object with at least the metadata fields: {"...
	id, _ := json.Marshal(d.ActivationID)
	b := make([]byte, 0, len(doc)+len(id)+8)
	b = append(b, `{"_id":`...)
	b = append(b, id...)
	b = append(b, ',')
	return append(b, doc[1:]...)
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
