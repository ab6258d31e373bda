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

	Concurrency  int           // deliveries written at once; default 8
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

// Kick tells the worker that deliveries were added. It never blocks.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done. Then it takes no new deliveries, lets
// those in flight finish for up to Config.DrainTimeout, cancels the rest
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

	inFlight := map[deliveryKey]bool{}
	done := make(chan deliveryKey, w.cfg.Concurrency)
	var wg sync.WaitGroup
	timer := time.NewTimer(w.cfg.PollInterval)
	defer timer.Stop()

	for {
		if free := w.cfg.Concurrency - len(inFlight); free > 0 {
			// Ask for enough to fill the free slots even if the oldest
			// pending ones are those in flight.
			ds, err := w.cfg.Queue.Pending(ctx, free+len(inFlight))
			if err != nil && ctx.Err() == nil {
				w.log.Error("sinks: reading pending deliveries", "err", err)
			}
			for _, d := range ds {
				k := deliveryKey{d.ActivationID, d.SinkIndex}
				if free == 0 || inFlight[k] {
					continue
				}
				inFlight[k] = true
				free--
				w.metrics.inFlight.Inc()
				wg.Go(func() {
					w.deliver(sendCtx, d)
					w.metrics.inFlight.Dec()
					done <- k
				})
			}
		}

		timer.Reset(w.cfg.PollInterval)
		select {
		case k := <-done:
			delete(inFlight, k)
		drained: // collect every other finished write before asking the queue again
			for {
				select {
				case k := <-done:
					delete(inFlight, k)
				default:
					break drained
				}
			}
		case <-w.kick:
		case <-timer.C:
		case <-ctx.Done():
			w.drain(&wg, done, len(inFlight), cancelSends)
			return nil
		}
	}
}

// drain waits for n writes in flight, cancelling them after DrainTimeout.
func (w *Worker) drain(wg *sync.WaitGroup, done <-chan deliveryKey, n int, cancel context.CancelFunc) {
	t := time.NewTimer(w.cfg.DrainTimeout)
	defer t.Stop()
	for ; n > 0; n-- {
		select {
		case <-done:
		case <-t.C:
			w.log.Warn("sinks: writes still in flight after the drain timeout; cancelling them (they stay pending)", "in_flight", n, "timeout", w.cfg.DrainTimeout)
			cancel()
			wg.Wait() // done has room for every write, so none blocks on it
			return
		}
	}
	wg.Wait()
}

// deliver makes one attempt and records its result in the queue, the
// metrics, the health table and (throttled) the log.
func (w *Worker) deliver(ctx context.Context, d Delivery) {
	out, err := w.cfg.Sender.Send(ctx, d)
	if err != nil && ctx.Err() != nil {
		return // shutting down: not the sink's fault; the delivery stays pending
	}
	// Marks must land even when Run is shutting down.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	attrs := []any{"activation", d.ActivationID, "module", d.Module, "function", d.Function, "sink", d.Sink, "sink_index", d.SinkIndex}

	if err == nil {
		if out == AlreadyStored {
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
	msg := d.Sink.scrub(err.Error())
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
