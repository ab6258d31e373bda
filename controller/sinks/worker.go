package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a [Worker]. Queue is required; zero values elsewhere mean
// the defaults given.
type Config struct {
	Queue  Queue
	Sender Sender // nil: a [Couch] with its defaults, closed when Run returns
	Logger *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	// Concurrency is how many requests (batches) are written at once;
	// default 8.
	Concurrency int
	// BatchSize is the most deliveries written in one request (CouchDB's
	// _bulk_docs); default 200. A batch also closes at 8 MiB of output.
	BatchSize    int
	PollInterval time.Duration // how often to look for due retries without a Kick; default 1 s
	MinBackoff   time.Duration // wait after the first failure; default 1 s, doubling per failure
	MaxBackoff   time.Duration // longest wait between attempts; default 1 min
	// DrainTimeout is how long Run, once its context is done, lets writes
	// in flight finish before cancelling them; default 5 s.
	DrainTimeout time.Duration
	// LogEvery limits failure warnings to one per sink of a function per
	// period (the others are logged at debug level); default 30 s.
	LogEvery time.Duration
}

// Validate fills in defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.Queue == nil {
		return errors.New("sinks: Config.Queue is required")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 200
	}
	def(&c.PollInterval, time.Second)
	def(&c.MinBackoff, time.Second)
	def(&c.MaxBackoff, time.Minute)
	def(&c.DrainTimeout, 5*time.Second)
	def(&c.LogEvery, 30*time.Second)
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("sinks: MaxBackoff %v is shorter than MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Worker delivers what its [Queue] holds. Build it with [NewWorker], run it
// with [Worker.Run], and call [Worker.Kick] whenever deliveries are added.
type Worker struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	ownSender *Couch // set when the worker made its Sender
	kick      chan struct{}
	running   atomic.Bool

	mu     sync.Mutex
	health map[functionKey]map[int]*sinkState
}

type functionKey struct{ module, function string }

// sinkState is what Health reports, plus the state of log throttling.
type sinkState struct {
	SinkHealth
	lastWarn   time.Time
	suppressed int
}

// SinkHealth is how deliveries to one sink of a function have gone since
// this process started. The API shows it under the function's sinks.
type SinkHealth struct {
	Index               int       `json:"index"`                // position in the function's "sinks"
	Sink                string    `json:"sink"`                 // the URL, password redacted
	Delivered           uint64    `json:"delivered"`            // documents stored or found already stored
	Failures            uint64    `json:"failures"`             // failed attempts
	ConsecutiveFailures uint64    `json:"consecutive_failures"` // failed attempts since the last success; 0 is healthy
	LastError           string    `json:"last_error,omitempty"`
	LastErrorTime       time.Time `json:"last_error_time,omitzero"`
	LastDeliveryTime    time.Time `json:"last_delivery_time,omitzero"`
}

// NewWorker checks cfg and registers the metrics. It does no other I/O.
func NewWorker(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Queue)
	if err != nil {
		return nil, fmt.Errorf("sinks: registering metrics: %w", err)
	}
	w := &Worker{
		log:     cfg.Logger,
		metrics: m,
		kick:    make(chan struct{}, 1),
		health:  map[functionKey]map[int]*sinkState{},
	}
	if cfg.Sender == nil {
		w.ownSender = NewCouch(CouchConfig{})
		cfg.Sender = w.ownSender
	}
	w.cfg = cfg
	return w, nil
}

// Kick tells the worker that deliveries were added. It never blocks, and
// does nothing while Run is not running (another controller of the
// cluster delivers: it finds them at its next poll).
func (w *Worker) Kick() {
	if !w.running.Load() {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, in batches (see the package
// documentation). Then it takes no new deliveries, lets the batches in
// flight finish for up to Config.DrainTimeout, cancels the rest
// (they stay pending: a cancelled write is not counted as a failure) and
// returns nil.
//
// # Errors
//
// [ErrRunning] if Run is already running. Errors of the queue are logged
// and retried at the poll interval, not returned.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer w.running.Store(false)
	if w.ownSender != nil {
		defer w.ownSender.Close()
	}

	// Writes get their own context so that shutdown can drain them.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()

	inFlight := map[deliveryKey]bool{} // deliveries in the batches being written
	requests := 0                      // batches being written
	done := make(chan []deliveryKey, w.cfg.Concurrency)
	finish := func(keys []deliveryKey) {
		for _, k := range keys {
			delete(inFlight, k)
		}
		requests--
	}
	var wg sync.WaitGroup
	timer := time.NewTimer(w.cfg.PollInterval)
	defer timer.Stop()

	for {
		if free := w.cfg.Concurrency - requests; free > 0 {
			// The oldest pending deliveries include those in flight: ask
			// for enough beyond them to fill the free requests, and at
			// least pendingAhead, so that batches fill when the deliveries
			// of several sinks are interleaved.
			ds, err := w.cfg.Queue.Pending(ctx, len(inFlight)+max(free*w.cfg.BatchSize, pendingAhead))
			if err != nil && ctx.Err() == nil {
				w.log.Error("sinks: reading pending deliveries", "err", err)
			}
			for _, b := range w.batches(ds, inFlight, free) {
				keys := make([]deliveryKey, len(b))
				for i, d := range b {
					keys[i] = deliveryKey{d.ActivationID, d.SinkIndex}
					inFlight[keys[i]] = true
				}
				requests++
				w.metrics.inFlight.Add(float64(len(b)))
				wg.Go(func() {
					w.deliver(sendCtx, b)
					w.metrics.inFlight.Sub(float64(len(b)))
					done <- keys
				})
			}
		}

		timer.Reset(w.cfg.PollInterval)
		select {
		case keys := <-done:
			finish(keys)
		drained: // collect every other finished batch before asking the queue again
			for {
				select {
				case keys := <-done:
					finish(keys)
				default:
					break drained
				}
			}
		case <-w.kick:
		case <-timer.C:
		case <-ctx.Done():
			w.drain(&wg, done, requests, cancelSends)
			return nil
		}
	}
}

// pendingAhead is the fewest deliveries not in flight that Run asks the
// queue for at a time.
const pendingAhead = 1000

// maxBatchBytes closes a batch before its outputs pass it (a larger output
// goes alone), keeping requests well under CouchDB's request size limit.
const maxBatchBytes = 8 << 20

// batchKey groups the deliveries one request can carry: those to the same
// server and database as the same user. Deliveries with invalid parameters
// are grouped by their parameters; they fail without a request.
type batchKey struct {
	t       target
	invalid Params
}

func batchKeyOf(p Params) batchKey {
	if t, err := p.target(); err == nil {
		return batchKey{t: t}
	}
	return batchKey{invalid: p}
}

// batches groups the deliveries of ds that are not in skip by sink target
// into at most n batches of at most Config.BatchSize deliveries (and about
// maxBatchBytes of output), keeping the order of ds within each and ordered
// by their oldest delivery.
func (w *Worker) batches(ds []Delivery, skip map[deliveryKey]bool, n int) [][]Delivery {
	var out [][]Delivery
	var size []int
	open := map[batchKey]int{} // the batch in out being filled for a target
	for _, d := range ds {
		if skip[deliveryKey{d.ActivationID, d.SinkIndex}] {
			continue
		}
		key := batchKeyOf(d.Sink)
		i, ok := open[key]
		if ok && (len(out[i]) >= w.cfg.BatchSize || size[i]+len(d.Output) > maxBatchBytes) {
			ok = false
		}
		if !ok {
			if len(out) == n {
				continue // a later delivery may still fit in an open batch
			}
			i = len(out)
			open[key] = i
			out = append(out, nil)
			size = append(size, 0)
		}
		out[i] = append(out[i], d)
		size[i] += len(d.Output)
	}
	return out
}

// drain waits for n batches in flight, cancelling them after DrainTimeout.
func (w *Worker) drain(wg *sync.WaitGroup, done <-chan []deliveryKey, n int, cancel context.CancelFunc) {
	t := time.NewTimer(w.cfg.DrainTimeout)
	defer t.Stop()
	for ; n > 0; n-- {
		select {
		case <-done:
		case <-t.C:
			w.log.Warn("sinks: writes still in flight after the drain timeout; cancelling them (they stay pending)", "requests", n, "timeout", w.cfg.DrainTimeout)
			cancel()
			wg.Wait() // done has room for every batch, so none blocks on it
			return
		}
	}
	wg.Wait()
}

// deliver makes one attempt at a batch and records the result of each
// delivery in the queue, the metrics, the health table and (throttled) the
// log.
func (w *Worker) deliver(ctx context.Context, batch []Delivery) {
	results := w.cfg.Sender.SendBatch(ctx, batch)
	if len(results) != len(batch) { // a broken Sender: retry them all later
		err := fmt.Errorf("sinks: sender returned %d results for %d deliveries", len(results), len(batch))
		results = make([]Result, len(batch))
		for i := range results {
			results[i].Err = err
		}
	}
	// Marks must land even when Run is shutting down.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for i, d := range batch {
		w.record(ctx, mctx, d, results[i])
	}
}

// record marks one delivery of a batch done or failed.
func (w *Worker) record(ctx, mctx context.Context, d Delivery, r Result) {
	if r.Err != nil && ctx.Err() != nil {
		return // shutting down: not the sink's fault; the delivery stays pending
	}
	attrs := []any{"activation", d.ActivationID, "module", d.Module, "function", d.Function, "sink", d.Sink, "sink_index", d.SinkIndex}

	if r.Err == nil {
		if r.Outcome == AlreadyStored {
			w.metrics.deliveries.WithLabelValues(resultConflict).Inc()
		} else {
			w.metrics.deliveries.WithLabelValues(resultOK).Inc()
		}
		if merr := w.cfg.Queue.Delivered(mctx, d.ActivationID, d.SinkIndex); merr != nil {
			// It will be sent again and meet a conflict: nothing lost.
			w.log.Error("sinks: marking a delivery done", append(attrs, "err", merr)...)
		}
		w.succeeded(d, attrs)
		return
	}

	w.metrics.deliveries.WithLabelValues(resultError).Inc()
	wait := w.backoff(d.Attempts)
	msg := d.Sink.scrub(r.Err.Error())
	if merr := w.cfg.Queue.Failed(mctx, d.ActivationID, d.SinkIndex, msg, time.Now().Add(wait)); merr != nil {
		w.log.Error("sinks: recording a failed delivery", append(attrs, "err", merr)...)
	}
	w.failed(d, msg, append(attrs, "attempt", d.Attempts+1, "retry_in", wait.Round(time.Millisecond), "err", msg))
}

// backoff is the wait after the (attempts+1)th failure: MinBackoff doubled
// per earlier failure, capped at MaxBackoff, of which a random part of up to
// half is taken off, so that deliveries failing together spread out.
func (w *Worker) backoff(attempts int) time.Duration {
	d := w.cfg.MinBackoff
	for i := 0; i < attempts && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	return d - rand.N(d/2+1)
}

func (w *Worker) state(d Delivery) *sinkState {
	k := functionKey{d.Module, d.Function}
	m := w.health[k]
	if m == nil {
		m = map[int]*sinkState{}
		w.health[k] = m
	}
	s := m[d.SinkIndex]
	if s == nil {
		s = &sinkState{SinkHealth: SinkHealth{Index: d.SinkIndex}}
		m[d.SinkIndex] = s
	}
	s.Sink = d.Sink.String()
	return s
}

func (w *Worker) succeeded(d Delivery, attrs []any) {
	w.mu.Lock()
	s := w.state(d)
	s.Delivered++
	s.LastDeliveryTime = time.Now()
	recovered := s.ConsecutiveFailures
	s.ConsecutiveFailures = 0
	s.suppressed = 0
	s.lastWarn = time.Time{}
	w.mu.Unlock()
	if recovered > 0 {
		w.log.Info("sinks: sink delivering again", append(attrs, "failed_attempts", recovered)...)
	}
}

func (w *Worker) failed(d Delivery, msg string, attrs []any) {
	now := time.Now()
	w.mu.Lock()
	s := w.state(d)
	s.Failures++
	s.ConsecutiveFailures++
	s.LastError = msg
	s.LastErrorTime = now
	warn := now.Sub(s.lastWarn) >= w.cfg.LogEvery
	suppressed := s.suppressed
	if warn {
		s.lastWarn, s.suppressed = now, 0
	} else {
		s.suppressed++
	}
	w.mu.Unlock()
	if warn {
		w.log.Warn("sinks: delivery failed, will retry", append(attrs, "suppressed", suppressed)...)
	} else {
		w.log.Debug("sinks: delivery failed, will retry", attrs...)
	}
}

// Health returns how the sinks of a function have fared in this process,
// ordered by sink index; nil when none has been tried yet.
func (w *Worker) Health(module, function string) []SinkHealth {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.health[functionKey{module, function}]
	if len(m) == 0 {
		return nil
	}
	hs := make([]SinkHealth, 0, len(m))
	for _, s := range m {
		hs = append(hs, s.SinkHealth)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Index < hs[j].Index })
	return hs
}

// Forget drops the health of a function (deleted, or its sinks replaced).
func (w *Worker) Forget(module, function string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.health, functionKey{module, function})
}
