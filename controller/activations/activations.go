// Package activations records activations on the controller and bounds
// what the store keeps of them.
//
// The [Recorder] records the activations the controller dispatched itself
// (REST and cloud MQTT invocations) and the ones agents ran on their own
// and replay from their outboxes: every path that stores an activation goes
// through it. Records are idempotent by activation id, so a replay never
// duplicates, and recording a successful activation queues its sink
// deliveries in the same transaction, so a sink never misses one.
//
// # Bounds
//
// A record keeps at most [Bounds] of the function's output and of its error
// message (64 KiB and 8 KiB by default): a longer one is cut, at a UTF-8
// boundary, and the record is marked Truncated. The caller of a synchronous
// invocation still gets the whole output (the recorder never sees its
// answer), and so do the sinks: the deliveries of a truncated activation
// keep their own copy of the whole output (store.ActivationWithSinks.SinkOutput).
// An error message has no sink, and is only cut.
//
// A record also keeps at most Bounds.LogLines log lines holding at most
// Bounds.LogBytes of text (100 and 64 KiB by default, the agent's own
// defaults): an agent is not trusted to have bounded them. What does not
// fit is dropped (the line that crosses the byte bound is cut at a UTF-8
// boundary), the record is marked Truncated, and one "wisp" line saying how
// much was dropped ends the log. A last "wisp" line of at most
// MaxMarkerBytes is not counted, so the agent's own truncation marker
// survives a bound equal to the agent's.
//
// The [Pruner] removes old records: those older than the retention, those
// beyond the newest N of each function, then those beyond the newest N in
// all ([Retention]), in batches of one short transaction each. It never
// removes an activation whose sink deliveries are still queued (they read
// it); it goes at the first pass after they are done.
//
// It must never talk to agents or sinks itself.
package activations

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/tracing"
	"github.com/wispfn/wisp/protocol"
)

// Store is what the recorder needs.
type Store interface {
	RecordActivations(ctx context.Context, as []store.ActivationWithSinks) (int, error)
	GetFunction(ctx context.Context, module, name string) (store.Function, error)
}

// Default bounds of one record.
const (
	DefaultOutputBytes  = 64 << 10
	DefaultMessageBytes = 8 << 10
	DefaultLogLines     = 100
	DefaultLogBytes     = 64 << 10
	// MaxMarkerBytes bounds the last "wisp" log line that the log bound
	// does not count (an agent's truncation marker).
	MaxMarkerBytes = 256
)

// Bounds caps what one activation record keeps: bytes of output, of error
// message and of log text, and log lines. Zero fields take the defaults.
type Bounds struct {
	OutputBytes  int
	MessageBytes int
	LogLines     int
	LogBytes     int
}

func (b Bounds) withDefaults() Bounds {
	if b.OutputBytes <= 0 {
		b.OutputBytes = DefaultOutputBytes
	}
	if b.MessageBytes <= 0 {
		b.MessageBytes = DefaultMessageBytes
	}
	if b.LogLines <= 0 {
		b.LogLines = DefaultLogLines
	}
	if b.LogBytes <= 0 {
		b.LogBytes = DefaultLogBytes
	}
	return b
}

// Config configures a Recorder. Store is required.
type Config struct {
	Store Store
	// Recorded is called after new activations were stored (it wakes the
	// sink worker); may be nil.
	Recorded func()
	Bounds   Bounds
	Metrics  *Metrics // nil records nothing
	Logger   *slog.Logger
	// Tracer exports a span for each outbox entry that carries a sampled
	// traceparent (a local-API caller's); nil exports nothing.
	Tracer *tracing.Exporter
}

// Recorder records activations. Build it with New and run it with Run.
type Recorder struct {
	st       Store
	log      *slog.Logger
	recorded func()
	bounds   Bounds
	metrics  *Metrics
	tracer   *tracing.Exporter

	// Records wait in queued (at most maxQueued) for Run. The first record
	// of a batch wakes Run, and so does one whose caller waits (urgent);
	// the others only join the batch: one wake-up of Run per batch, not per
	// invocation. mu guards queued, waiters and room.
	mu      sync.Mutex
	queued  []pending
	spare   []pending // Run's: the last batch's slice, reused for the next queue
	waiters int       // queued records whose caller waits
	// room, when not nil, is closed once Run takes records out of a full
	// queue (Dispatched waits on it).
	room   chan struct{}
	wake   chan struct{} // capacity 1: records are queued
	urgent chan struct{} // capacity 1: a queued record's caller waits
}

// maxQueued bounds the records waiting to be committed: past it, Dispatched
// waits (for room or its context), so a store slower than the invocations
// holds them back rather than filling memory. maxBatch bounds one commit.
const (
	maxQueued = 4096
	maxBatch  = 500
)

type pending struct {
	a    store.ActivationWithSinks
	done chan error // nil: the caller does not wait
}

// New returns a Recorder; it does no I/O.
func New(cfg Config) *Recorder {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{st: cfg.Store, log: log, recorded: cfg.Recorded, bounds: cfg.Bounds.withDefaults(),
		metrics: cfg.Metrics, tracer: cfg.Tracer, wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
}

// bound returns a with its output and message cut to the recorder's
// bounds, and the sinks it is recorded with. When the output was cut and
// the activation has sinks, they get the whole output (SinkOutput). A cut
// output or message is copied, so the record does not keep the whole one
// in memory while it waits in the queue.
func (r *Recorder) bound(a store.Activation, sinks [][]byte) store.ActivationWithSinks {
	out := store.ActivationWithSinks{Activation: a, Sinks: sinks}
	if len(a.Output) > r.bounds.OutputBytes {
		out.Output = bytes.Clone(a.Output[:utf8Cut(a.Output, r.bounds.OutputBytes)])
		out.Truncated = true
		if len(sinks) > 0 && a.Code == 0 {
			out.SinkOutput = a.Output
		}
		r.metrics.truncated(fieldOutput)
	}
	if len(a.Message) > r.bounds.MessageBytes {
		out.Message = strings.Clone(a.Message[:utf8Cut(a.Message, r.bounds.MessageBytes)])
		out.Truncated = true
		r.metrics.truncated(fieldMessage)
	}
	if logs, cut := boundLogs(a.Logs, r.bounds.LogLines, r.bounds.LogBytes); cut {
		out.Logs = logs
		out.Truncated = true
		r.metrics.truncated(fieldLogs)
	}
	return out
}

// boundLogs returns lines within maxLines lines and maxBytes bytes of
// text, and whether it cut them. A cut log is a new slice of copied texts
// (the whole one is not kept in memory) ending with a "wisp" line that
// says what was dropped. A last "wisp" line of at most MaxMarkerBytes (an
// agent's truncation marker) is not counted, and is kept before it.
func boundLogs(lines []store.LogLine, maxLines, maxBytes int) ([]store.LogLine, bool) {
	body, marker := lines, []store.LogLine(nil)
	if n := len(lines); n > 0 && lines[n-1].Stream == streamPlatform && len(lines[n-1].Text) <= MaxMarkerBytes {
		body, marker = lines[:n-1], lines[n-1:]
	}
	size := 0
	for _, l := range body {
		size += len(l.Text)
	}
	if len(body) <= maxLines && size <= maxBytes {
		return lines, false
	}
	kept := make([]store.LogLine, 0, min(len(body), maxLines)+2)
	room := maxBytes
	for _, l := range body {
		if len(kept) == maxLines || room == 0 {
			break
		}
		if len(l.Text) > room {
			l.Text = l.Text[:utf8Cut(l.Text, room)]
			if l.Text == "" {
				break
			}
		}
		l.Text = strings.Clone(l.Text)
		kept = append(kept, l)
		room -= len(l.Text)
	}
	keptBytes := maxBytes - room
	for _, m := range marker {
		m.Text = strings.Clone(m.Text)
		kept = append(kept, m)
	}
	var at time.Time
	if n := len(body); n > 0 {
		at = body[n-1].Time
	}
	return append(kept, store.LogLine{Time: at, Stream: streamPlatform,
		Text: fmt.Sprintf("log truncated by the controller: %d more lines and %d bytes dropped (bound: %d lines, %d bytes per activation)",
			len(body)-(len(kept)-len(marker)), size-keptBytes, maxLines, maxBytes)}), true
}

// streamPlatform is the name of protocol.StreamPlatform, the stream of the
// lines the platform adds.
var streamPlatform = protocol.StreamPlatform.String()

// WireLogs is the log lines of a Result or an OutboxEntry as a record keeps
// them: the stream's name, the time in UTC (zero when the agent did not
// say, as agents before protocol version 3). nil stays nil. The texts are
// shared, not copied: the recorder's bound copies what it keeps of a log
// it cuts.
func WireLogs(lines []protocol.LogLine) []store.LogLine {
	if len(lines) == 0 {
		return nil
	}
	out := make([]store.LogLine, len(lines))
	for i, l := range lines {
		out[i] = store.LogLine{Stream: l.Stream.String(), Text: l.Text}
		if l.UnixUS != 0 {
			out[i].Time = time.UnixMicro(int64(min(l.UnixUS, maxUnixUS))).UTC()
		}
	}
	return out
}

// maxUnixUS keeps a hostile time within what the stores keep (Postgres
// timestamps end in the year 294276; this is the year 9999).
const maxUnixUS = 253402300799999999

// utf8Cut returns the length of the longest prefix of b that is at most n
// bytes and does not end inside a UTF-8 sequence (b is cut before the
// sequence that n would split; bytes that are not UTF-8 are cut at n).
func utf8Cut[T string | []byte](b T, n int) int {
	if len(b) <= n {
		return len(b)
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}

// sinkCopies is what each queued delivery keeps of its sink: the sink's
// JSON (fnspec.EncodeSink), so later edits of the function do not change
// where an activation goes.
func sinkCopies(sinks []fnspec.Sink) [][]byte {
	if len(sinks) == 0 {
		return nil
	}
	out := make([][]byte, len(sinks))
	for i, s := range sinks {
		out[i] = fnspec.EncodeSink(s)
	}
	return out
}

// Dispatched records an activation the controller ran. Recording is
// batched: with wait false the call returns at once (the caller already has
// its answer; a crash before the batch commits loses the record, never an
// answer); with wait true (the function has sinks, which must not miss it)
// it returns once the record is committed.
//
// a is bounded here, before it is queued: the queue holds bounded records,
// and the whole output only of an activation with sinks, whose caller waits.
func (r *Recorder) Dispatched(ctx context.Context, a store.Activation, sinks []fnspec.Sink, wait bool) error {
	p := pending{a: r.bound(a, sinkCopies(sinks))}
	if wait {
		p.done = make(chan error, 1)
	}
	if err := r.enqueue(ctx, p); err != nil {
		return err
	}
	if !wait {
		return nil
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue adds p to the queue, waiting for room (or ctx) while it is full.
func (r *Recorder) enqueue(ctx context.Context, p pending) error {
	for {
		r.mu.Lock()
		if len(r.queued) < maxQueued {
			first := len(r.queued) == 0
			r.queued = append(r.queued, p)
			if p.done != nil {
				r.waiters++
			}
			r.mu.Unlock()
			if first {
				signal(r.wake)
			}
			if p.done != nil {
				signal(r.urgent)
			}
			return nil
		}
		if r.room == nil {
			r.room = make(chan struct{})
		}
		room := r.room
		r.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// signal sends on a channel of capacity 1 without blocking: a signal
// already pending stands for this one.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// take removes up to n records from the front of the queue (all of them
// when n <= 0) and reports whether some are left.
func (r *Recorder) take(n int) ([]pending, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var batch []pending
	if n <= 0 || len(r.queued) <= n {
		batch, r.queued, r.spare = r.queued, r.spare[:0], nil
	} else {
		batch = slices.Clone(r.queued[:n])
		r.queued = append(r.queued[:0], r.queued[n:]...)
	}
	for _, p := range batch {
		if p.done != nil {
			r.waiters--
		}
	}
	if r.room != nil {
		close(r.room)
		r.room = nil
	}
	return batch, len(r.queued) > 0
}

// linger is how long a batch with no waiting caller collects more records
// before it commits: it bounds the commits (each one an fsync) to about 100
// a second however many invocations run, which keeps recording off the
// invocation path's critical resources. A batch with a waiting caller (a
// function with sinks) commits at once.
const linger = 10 * time.Millisecond

// Run commits queued records in batches until ctx is done, then flushes
// what is queued.
func (r *Recorder) Run(ctx context.Context) error {
	r.log.Info("activation records bounded", "max_output_bytes", r.bounds.OutputBytes, "max_message_bytes", r.bounds.MessageBytes,
		"max_log_lines", r.bounds.LogLines, "max_log_bytes", r.bounds.LogBytes)
	timer := time.NewTimer(linger)
	timer.Stop()
	for {
		select {
		case <-r.wake:
		case <-ctx.Done():
			r.flushQueued()
			return nil
		}
		r.mu.Lock()
		waiting := r.waiters > 0
		r.mu.Unlock()
		if !waiting {
			timer.Reset(linger)
			select {
			case <-timer.C:
			case <-r.urgent:
			case <-ctx.Done():
			}
			timer.Stop()
		}
		batch, more := r.take(maxBatch)
		if more {
			signal(r.wake)
		}
		if len(batch) > 0 {
			r.commit(context.WithoutCancel(ctx), batch)
		}
		clear(batch) // drop the records before the slice is reused
		if !more && cap(batch) <= maxBatch {
			r.spare = batch[:0]
		}
	}
}

func (r *Recorder) flushQueued() {
	if batch, _ := r.take(0); len(batch) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r.commit(ctx, batch)
		cancel()
	}
}

func (r *Recorder) commit(ctx context.Context, batch []pending) {
	as := make([]store.ActivationWithSinks, len(batch))
	for i, p := range batch {
		as[i] = p.a
	}
	n, err := r.st.RecordActivations(ctx, as)
	if err != nil {
		r.log.Error("recording activations failed", "count", len(as), "err", err)
	} else if n > 0 && r.recorded != nil {
		r.recorded()
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
}

// Outbox records activations an agent ran on its own. It returns once they
// are committed (the agent deletes them from its outbox only then). Ids
// already recorded are dropped by the store.
func (r *Recorder) Outbox(ctx context.Context, agentID string, entries []protocol.OutboxEntry) error {
	sinks := map[string][][]byte{}
	as := make([]store.ActivationWithSinks, 0, len(entries))
	for _, e := range entries {
		key := e.Module + "/" + e.Function
		s, ok := sinks[key]
		if !ok {
			fn, err := r.st.GetFunction(ctx, e.Module, e.Function)
			switch {
			case err == nil:
				// A function whose sinks are unreadable (fnspec's "Bad
				// stored data") ran on the agent before it knew: its
				// record is kept, with the sinks that read.
				s = sinkCopies(fn.Spec.Sinks)
			case errors.Is(err, store.ErrNotFound):
				s = nil // deleted since: keep the record, no sinks
			default:
				return fmt.Errorf("looking up %s: %w", key, err)
			}
			sinks[key] = s
		}
		a := store.Activation{
			ID: e.ActivationID, Module: e.Module, Function: e.Function, Digest: e.Digest, Agent: agentID,
			Source: e.Source, Code: int(e.Code), Message: e.Message, Output: e.Output,
			Started:  time.UnixMicro(int64(e.StartedUnixUS)).UTC(),
			Duration: time.Duration(e.DurationUS) * time.Microsecond,
			Logs:     WireLogs(e.Logs),
		}
		as = append(as, r.bound(a, s))
	}
	n, err := r.st.RecordActivations(ctx, as)
	if err != nil {
		return err
	}
	r.log.Info("outbox batch recorded", "agent", agentID, "entries", len(entries), "new", n)
	if r.tracer.Enabled() {
		for i := range entries {
			r.traceEdge(agentID, &entries[i])
		}
	}
	if n > 0 && r.recorded != nil {
		r.recorded()
	}
	return nil
}
