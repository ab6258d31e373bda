package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/store"
)

// Following activations: GET /v1/activations?follow=1 answers with a
// server-sent event stream (text/event-stream) of the activations recorded
// after it opened that the filters select, each as one "activation" event
// whose data is the record's JSON (GET /v1/activations/{id}'s data), in
// the order the store recorded them.
//
// The stream is driven by the store, so it sees what any controller on the
// same Postgres records: it reads (Recorded, ID) > cursor every
// FollowPoll, and at once when this process's recorder says it recorded
// something (Config.Recorded). Records are stamped by the store when their
// batch is written and become visible when it commits, so a batch can
// appear with a stamp a little older than one already seen: every read
// starts followSlack before the newest stamp seen and skips the ids
// already sent, so that none is lost or sent twice.
//
// The connection is hijacked from fasthttp once the request is accepted:
// fiber's WriteTimeout is one deadline for a whole response, which would
// cut every stream after a minute, while a stream needs a deadline per
// write. Each write must complete within followWriteWait, so a client that
// stops reading is dropped instead of holding memory (what is buffered is
// one bufio.Writer and one page of records); a comment line every
// FollowHeartbeat keeps proxies from closing an idle stream and finds
// clients that went away. The stream ends when the client closes, when a
// write fails, and when the server shuts down (Run waits for every stream).
// The number of open streams is capped in all and per subject (429).

// Bounds of following.
const (
	// FollowPoll is how often a follower reads the store when nothing woke it.
	FollowPoll = 250 * time.Millisecond
	// FollowHeartbeat is how often an idle stream gets a comment line.
	FollowHeartbeat = 15 * time.Second
	// DefaultMaxFollowers caps the open streams of the server;
	// DefaultMaxFollowersPerSubject those of one subject (the admin is one).
	DefaultMaxFollowers           = 128
	DefaultMaxFollowersPerSubject = 8

	followWriteWait = 10 * time.Second
	followSlack     = 2 * time.Second
	followPage      = 100
	// followMaxSeen bounds the ids a follower remembers within the slack;
	// beyond it (thousands of records a second) the oldest are forgotten
	// and could be sent twice, never lost.
	followMaxSeen = 50000
)

// RecordedSignal tells followers that activations were recorded in this
// process; Recorded returns a channel closed at the next recording.
// controller/activations.Bell implements it.
type RecordedSignal interface {
	Recorded() <-chan struct{}
}

// followers counts the open streams.
type followers struct {
	mu         sync.Mutex
	total      int
	perSubject map[string]int
	max, per   int
	wg         sync.WaitGroup
	ctx        context.Context // done when the server shuts down
	stop       context.CancelFunc
}

func newFollowers(max, per int) *followers {
	if max <= 0 {
		max = DefaultMaxFollowers
	}
	if per <= 0 {
		per = DefaultMaxFollowersPerSubject
	}
	ctx, stop := context.WithCancel(context.Background())
	return &followers{perSubject: map[string]int{}, max: max, per: per, ctx: ctx, stop: stop}
}

// take reserves a stream for subject; false when over a cap or shut down.
func (fs *followers) take(subject string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.ctx.Err() != nil || fs.total >= fs.max || fs.perSubject[subject] >= fs.per {
		return false
	}
	fs.total++
	fs.perSubject[subject]++
	fs.wg.Add(1)
	return true
}

func (fs *followers) release(subject string) {
	fs.mu.Lock()
	fs.total--
	if fs.perSubject[subject]--; fs.perSubject[subject] <= 0 {
		delete(fs.perSubject, subject)
	}
	fs.mu.Unlock()
	fs.wg.Done()
}

// Open returns the number of open streams.
func (fs *followers) open() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.total
}

// shutdown ends every stream and waits for them, at most until ctx is done.
func (fs *followers) shutdown(ctx context.Context) error {
	fs.mu.Lock()
	fs.stop()
	fs.mu.Unlock()
	done := make(chan struct{})
	go func() { fs.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("streams still open: %w", ctx.Err())
	}
}

// FollowersOpen returns the number of open follow streams (tests, metrics).
func (s *Server) FollowersOpen() int { return s.follow.open() }

// followActivations answers GET /v1/activations?follow=1 with f's filters.
func (s *Server) followActivations(c *fiber.Ctx, f store.ActivationFilter) error {
	for _, p := range []string{"before", "after", "until", "order", "limit"} {
		if c.Query(p) != "" {
			return fail(ErrBadRequest, "%s does not apply to follow=1: the stream starts now and runs in the order recorded", p)
		}
	}
	subject := caller(c).Name
	if !s.follow.take(subject) {
		c.Set(fiber.HeaderRetryAfter, "10")
		return fail(ErrTooManyRequests, "Too many open follow streams (at most %d in all and %d per subject); close one and retry", s.follow.max, s.follow.per)
	}
	// The first read of the store happens here, so that a store failure is
	// an ordinary error answer; the stream then owns the reservation.
	fl := &follower{st: s.store, f: f, seen: map[string]time.Time{}, log: s}
	if err := fl.prime(c.UserContext()); err != nil {
		s.follow.release(subject)
		return err
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) {
		defer s.follow.release(subject)
		fl.serve(s.follow.ctx, conn, s.recorded)
	})
	return nil
}

// follower is one stream's state.
type follower struct {
	st  store.Store
	f   store.ActivationFilter
	log *Server
	// newest is the newest Recorded seen (or the stream's start); seen holds
	// the ids sent (or skipped at the start) recorded within followSlack of it.
	newest time.Time
	seen   map[string]time.Time
}

// prime marks what is already recorded as seen: the stream shows only
// activations recorded after it opened.
func (fl *follower) prime(ctx context.Context) error {
	fl.newest = time.Now().UTC()
	return fl.poll(ctx, func(store.Activation) error { return nil })
}

// poll reads the activations recorded since followSlack before the newest
// seen, in pages, and hands each unseen one to emit.
func (fl *follower) poll(ctx context.Context, emit func(store.Activation) error) error {
	f := fl.f
	f.Order, f.Limit = store.OrderRecorded, followPage
	f.RecordedAfter, f.RecordedAfterID = fl.newest.Add(-followSlack), ""
	for {
		page, err := fl.st.ListActivations(ctx, f)
		if err != nil {
			return err
		}
		for _, a := range page {
			if _, ok := fl.seen[a.ID]; ok {
				continue
			}
			if err := emit(a); err != nil {
				return err
			}
			fl.seen[a.ID] = a.Recorded
			if a.Recorded.After(fl.newest) {
				fl.newest = a.Recorded
			}
		}
		if len(page) < followPage {
			break
		}
		last := page[len(page)-1]
		f.RecordedAfter, f.RecordedAfterID = last.Recorded, last.ID
	}
	floor := fl.newest.Add(-followSlack)
	for id, rec := range fl.seen {
		if rec.Before(floor) || len(fl.seen) > followMaxSeen {
			delete(fl.seen, id)
		}
	}
	return nil
}

// serve writes the stream on conn until the client goes, a write fails or
// done ends.
func (fl *follower) serve(done context.Context, conn net.Conn, recorded RecordedSignal) {
	ctx, cancel := context.WithCancel(done)
	defer cancel()
	// The request was read whole; what the client sends now is nothing or
	// the end of the connection, which ends the stream.
	conn.SetReadDeadline(time.Time{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		io.Copy(io.Discard, conn)
		cancel()
	}()
	defer func() {
		// fasthttp closes the connection when this returns (a hijacked
		// conn's Close does nothing); a past deadline ends the reader now.
		conn.SetReadDeadline(time.Now())
		<-readerDone
	}()

	w := bufio.NewWriterSize(conn, 8<<10)
	write := func(b []byte) error {
		conn.SetWriteDeadline(time.Now().Add(followWriteWait))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return w.Flush()
	}
	header := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n" +
		"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n: following activations\n\n"
	if err := write([]byte(header)); err != nil {
		return
	}
	emit := func(a store.Activation) error {
		b, err := json.Marshal(toActivationInfo(a))
		if err != nil {
			return err
		}
		return write(fmt.Appendf(nil, "event: activation\ndata: %s\n\n", b))
	}
	tick := time.NewTicker(FollowPoll)
	defer tick.Stop()
	beat := time.NewTicker(FollowHeartbeat)
	defer beat.Stop()
	var wake <-chan struct{}
	for {
		if recorded != nil {
			wake = recorded.Recorded()
		}
		select {
		case <-ctx.Done():
			if done.Err() != nil { // the server shuts down: say so
				write([]byte("event: end\ndata: {\"reason\":\"shutdown\"}\n\n"))
			}
			return
		case <-beat.C:
			if write([]byte(": ping\n\n")) != nil {
				return
			}
			continue
		case <-wake:
		case <-tick.C:
		}
		if err := fl.poll(ctx, emit); err != nil {
			if ctx.Err() == nil {
				fl.log.log.Warn("follow stream ended", "err", err)
			}
			return
		}
	}
}
