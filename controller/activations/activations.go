// Package activations records activations on the controller: the ones the
// controller dispatched itself (REST and cloud MQTT invocations) and the
// ones agents ran on their own and replay from their outboxes. Records are
// idempotent by activation id, so a replay never duplicates, and recording
// a successful activation queues its sink deliveries in the same
// transaction, so a sink never misses one.
//
// It must never talk to agents or sinks itself.
package activations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// Store is what the recorder needs.
type Store interface {
	RecordActivations(ctx context.Context, as []store.ActivationWithSinks) (int, error)
	GetFunction(ctx context.Context, module, name string) (store.Function, error)
}

// Recorder records activations. Build it with New and run it with Run.
type Recorder struct {
	st  Store
	log *slog.Logger
	// Recorded is called after new activations were stored (it wakes the
	// sink worker); may be nil.
	recorded func()

	queue chan pending
}

type pending struct {
	a    store.ActivationWithSinks
	done chan error // nil: the caller does not wait
}

// New returns a Recorder; it does no I/O.
func New(st Store, recorded func(), log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{st: st, log: log, recorded: recorded, queue: make(chan pending, 4096)}
}

// SplitSinks turns a function's sinks JSON array into one JSON value per sink.
func SplitSinks(raw []byte) [][]byte {
	if len(raw) == 0 {
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	out := make([][]byte, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}

// Dispatched records an activation the controller ran. Recording is
// batched: with wait false the call returns at once (the caller already has
// its answer; a crash before the batch commits loses the record, never an
// answer); with wait true (the function has sinks, which must not miss it)
// it returns once the record is committed.
func (r *Recorder) Dispatched(ctx context.Context, a store.Activation, sinks [][]byte, wait bool) error {
	p := pending{a: store.ActivationWithSinks{Activation: a, Sinks: sinks}}
	if wait {
		p.done = make(chan error, 1)
	}
	select {
	case r.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
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

// linger is how long a batch with no waiting caller collects more records
// before it commits: it bounds the commits (each one an fsync) to about 100
// a second however many invocations run, which keeps recording off the
// invocation path's critical resources. A batch with a waiting caller (a
// function with sinks) commits at once.
const linger = 10 * time.Millisecond

// Run commits queued records in batches until ctx is done, then flushes
// what is queued.
func (r *Recorder) Run(ctx context.Context) error {
	timer := time.NewTimer(linger)
	timer.Stop()
	for {
		var first pending
		select {
		case first = <-r.queue:
		case <-ctx.Done():
			r.flushQueued()
			return nil
		}
		batch := []pending{first}
		waiting := first.done != nil
		if !waiting {
			timer.Reset(linger)
		}
	collect:
		for len(batch) < 500 {
			if waiting {
				select {
				case p := <-r.queue:
					batch = append(batch, p)
				default:
					break collect
				}
				continue
			}
			select {
			case p := <-r.queue:
				batch = append(batch, p)
				if p.done != nil {
					waiting = true
				}
			case <-timer.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		timer.Stop()
		r.commit(context.WithoutCancel(ctx), batch)
	}
}

func (r *Recorder) flushQueued() {
	var batch []pending
	for {
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		default:
			if len(batch) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r.commit(ctx, batch)
				cancel()
			}
			return
		}
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
				s = SplitSinks(fn.Sinks)
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
		}
		as = append(as, store.ActivationWithSinks{Activation: a, Sinks: s})
	}
	n, err := r.st.RecordActivations(ctx, as)
	if err != nil {
		return err
	}
	r.log.Info("outbox batch recorded", "agent", agentID, "entries", len(entries), "new", n)
	if n > 0 && r.recorded != nil {
		r.recorded()
	}
	return nil
}
