package server

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/wispfn/wisp/controller/events"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/sinks"
	"github.com/wispfn/wisp/controller/store"
)

// distributor fans the API's function changes out to the fleet (code and
// desired sets) and to the cloud MQTT events.
type distributor struct {
	fleet  *fleet.Fleet
	events *events.Manager
	store  store.Store
	log    *slog.Logger
}

func (d *distributor) Stored(ctx context.Context, fn store.Function, code []byte, wait bool) {
	d.fleet.Stored(ctx, fn, code, wait)
}

func (d *distributor) Removed(ctx context.Context, digests []string) { d.fleet.Drop(digests...) }

func (d *distributor) Changed(ctx context.Context) {
	d.fleet.SyncDesired(ctx)
	d.syncEvents(ctx)
}

// Connect implements api.Connector: it syncs the cloud events (waiting for
// this function's brokers) and checks each CouchDB sink, so the API can
// answer FunLess's 207 when one fails. Local events belong to the agents
// and count as connected.
func (d *distributor) Connect(ctx context.Context, fn store.Function) (evErrs, sinkErrs []error) {
	if len(fn.Events) > 0 {
		statuses := d.syncEvents(ctx)
		evs, err := events.ParseEvents(fn.Events)
		if err == nil {
			for _, e := range evs {
				var got error
				if !e.Local {
					b := e.Binding(fn.Module, fn.Name)
					for _, st := range statuses {
						if st.Binding == b {
							got = st.Err
						}
					}
				}
				evErrs = append(evErrs, got)
			}
		}
	}
	if len(fn.Sinks) > 0 {
		var list []sinks.Sink
		if json.Unmarshal(fn.Sinks, &list) == nil {
			for _, sk := range list {
				sinkErrs = append(sinkErrs, sinks.Check(ctx, sk.Params))
			}
		}
	}
	return evErrs, sinkErrs
}

// syncEvents makes the live MQTT subscriptions those of the stored
// functions' cloud events (local events are the agents').
func (d *distributor) syncEvents(ctx context.Context) []events.Status {
	fns, err := d.store.ListFunctions(ctx)
	if err != nil {
		d.log.Error("listing functions for events", "err", err)
		return nil
	}
	var bs []events.Binding
	for _, fn := range fns {
		if len(fn.Events) == 0 {
			continue
		}
		evs, err := events.ParseEvents(fn.Events)
		if err != nil {
			d.log.Warn("unreadable events", "module", fn.Module, "function", fn.Name, "err", err)
			continue
		}
		for _, e := range evs {
			if !e.Local {
				bs = append(bs, e.Binding(fn.Module, fn.Name))
			}
		}
	}
	statuses, err := d.events.Sync(ctx, bs)
	if err != nil {
		d.log.Warn("syncing events", "err", err)
		return nil
	}
	for _, st := range statuses {
		if st.Err != nil {
			d.log.Warn("event not connected (retrying)", "module", st.Module, "function", st.Function, "broker", st.Broker(), "topic", st.Topic, "err", st.Err)
		}
	}
	return statuses
}

// eventInvoker turns an MQTT message into an invocation through the
// dispatcher, like a REST call with the message as args.
func eventInvoker(st store.Store, disp *fleet.Dispatcher) events.Invoke {
	return func(ctx context.Context, module, function string, args []byte) error {
		fn, err := st.GetFunction(ctx, module, function)
		if err != nil {
			return err
		}
		_, err = disp.Invoke(ctx, invoke.ForFunction(fn, json.RawMessage(args), invoke.SourceMQTT))
		return err
	}
}
