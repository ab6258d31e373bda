package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/wispfn/wisp/controller/sinks"
	"github.com/wispfn/wisp/controller/store"
)

// sinkQueue is the sink worker's durable queue over the controller's store:
// recording an activation queues its deliveries in the same transaction.
type sinkQueue struct{ st store.Store }

var _ sinks.Queue = sinkQueue{}

func (q sinkQueue) Pending(ctx context.Context, limit int) ([]sinks.Delivery, error) {
	ds, err := q.st.PendingDeliveries(ctx, time.Now(), limit)
	if err != nil {
		return nil, err
	}
	out := make([]sinks.Delivery, 0, len(ds))
	for _, d := range ds {
		var s sinks.Sink
		if err := json.Unmarshal(d.Sink, &s); err != nil {
			// A sink that cannot be read can never be delivered: park it
			// far in the future so it stays visible but does not spin.
			q.st.DeliveryFailed(ctx, d.ActivationID, d.SinkIndex, "unreadable sink: "+err.Error(), time.Now().Add(24*time.Hour))
			continue
		}
		out = append(out, sinks.Delivery{
			ActivationID: d.ActivationID, Module: d.Module, Function: d.Function, SinkIndex: d.SinkIndex,
			Sink: s.Params, Output: d.Output, Time: d.Started, Attempts: d.Attempts,
		})
	}
	return out, nil
}

func (q sinkQueue) Delivered(ctx context.Context, id string, idx int) error {
	if err := q.st.DeliveryDone(ctx, id, idx); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func (q sinkQueue) Failed(ctx context.Context, id string, idx int, msg string, next time.Time) error {
	if err := q.st.DeliveryFailed(ctx, id, idx, msg, next); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
