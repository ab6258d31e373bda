package sinks

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

// ParkUnreadable is how far in the future a delivery whose sink cannot be
// read is put: it can never be made, so it stays visible (GET of its
// function lists it with the reason) without being retried in a loop.
const ParkUnreadable = 24 * time.Hour

// StoreQueue is the [Queue] over the controller's store: recording an
// activation queued its deliveries in the same transaction, each with a
// copy of its sink's JSON (fnspec.EncodeSink).
type StoreQueue struct {
	Store store.Store
	// Log, when set, gets a warning for each parked delivery.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var _ Queue = (*StoreQueue)(nil)

func (q *StoreQueue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

// Pending implements [Queue]. A delivery whose sink does not parse
// (fnspec.DecodeSink) is parked for [ParkUnreadable] with the reason as
// its last error, and left out.
func (q *StoreQueue) Pending(ctx context.Context, limit int) ([]Delivery, error) {
	now := q.now()
	ds, err := q.Store.PendingDeliveries(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, 0, len(ds))
	for _, d := range ds {
		s, err := fnspec.DecodeSink(d.Sink)
		if err != nil {
			msg := "unreadable sink: " + err.Error()
			if q.Log != nil {
				q.Log.Warn("sink delivery parked", "activation", d.ActivationID, "module", d.Module, "function", d.Function, "sink_index", d.SinkIndex, "err", err)
			}
			if perr := q.Store.DeliveryFailed(ctx, d.ActivationID, d.SinkIndex, msg, now.Add(ParkUnreadable)); perr != nil && !errors.Is(perr, store.ErrNotFound) {
				return nil, perr
			}
			continue
		}
		out = append(out, Delivery{
			ActivationID: d.ActivationID, Module: d.Module, Function: d.Function, SinkIndex: d.SinkIndex,
			Sink: Params(s.Params), Output: d.Output, Time: d.Started, Attempts: d.Attempts,
		})
	}
	return out, nil
}

// Delivered implements [Queue]; a delivery already gone is no error.
func (q *StoreQueue) Delivered(ctx context.Context, id string, idx int) error {
	if err := q.Store.DeliveryDone(ctx, id, idx); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// Failed implements [Queue]; a delivery already gone is no error.
func (q *StoreQueue) Failed(ctx context.Context, id string, idx int, msg string, next time.Time) error {
	if err := q.Store.DeliveryFailed(ctx, id, idx, msg, next); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
