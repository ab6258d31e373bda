package server

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/wispfn/wisp/controller/cluster"
	"github.com/wispfn/wisp/controller/events"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/sinks"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/timers"
)

// distributor fans the API's function changes out to the fleet (code and
// desired sets), to the cloud MQTT events and to the cloud timers.
type distributor struct {
	fleet  *fleet.Fleet
	events *events.Manager
	timers *timers.Runner
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
	d.syncTimers(ctx)
}

// syncTimers makes the running cloud timers those of the stored functions.
func (d *distributor) syncTimers(ctx context.Context) {
	if err := d.timers.Sync(ctx); err != nil {
		d.log.Error("syncing timers", "err", err)
	}
}

// Connect implements api.Connector: it syncs the cloud events (waiting for
// this function's brokers, or, when another controller holds the events
// lease, probing them with events.Check) and checks each CouchDB sink, so
// the API can answer FunLess's 207 when one fails. Local events belong to the agents
// and count as connected.
func (d *distributor) Connect(ctx context.Context, fn store.Function) (evErrs, sinkErrs []error) {
	if len(fn.Spec.Events) > 0 {
		statuses := d.syncEvents(ctx)
		if !d.events.Holding() { // another controller holds the subscriptions: probe the brokers from here
			statuses = d.events.Check(ctx, events.Bindings(fn.Module, fn.Name, fn.Spec.Events))
		}
		evErrs = eventErrors(fn, statuses)
	}
	for _, sk := range fn.Spec.Sinks {
		sinkErrs = append(sinkErrs, sinks.Check(ctx, sinks.Params(sk.Params)))
	}
	return evErrs, sinkErrs
}

// eventErrors is one entry per event of fn: the error of its binding among
// statuses (nil when it subscribed, or when it is edge-local: the agents'
// business).
func eventErrors(fn store.Function, statuses []events.Status) []error {
	out := make([]error, 0, len(fn.Spec.Events))
	for _, e := range fn.Spec.Events {
		var got error
		if bs := events.Bindings(fn.Module, fn.Name, []fnspec.Event{e}); len(bs) == 1 {
			for _, st := range statuses {
				if st.Binding == bs[0] {
					got = st.Err
				}
			}
		}
		out = append(out, got)
	}
	return out
}

// syncEvents makes the live MQTT subscriptions those of the stored
// functions' cloud events (local events are the agents').
func (d *distributor) syncEvents(ctx context.Context) []events.Status {
	fns, err := d.store.ListFunctions(ctx)
	if err != nil {
		d.log.Error("listing functions for events", "err", err)
		return nil
	}
	statuses, err := d.events.Sync(ctx, cloudBindings(fns, d.log))
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

// cloudBindings are the subscriptions of the functions' cloud events; a
// function with unreadable settings gets none (it never runs, fnspec's
// "Bad stored data").
func cloudBindings(fns []store.Function, log *slog.Logger) []events.Binding {
	var bs []events.Binding
	for _, fn := range fns {
		if fn.Unreadable != nil {
			log.Warn("no cloud events for a function with unreadable settings", "module", fn.Module, "function", fn.Name, "err", fn.Unreadable)
			continue
		}
		bs = append(bs, events.Bindings(fn.Module, fn.Name, fn.Spec.Events)...)
	}
	return bs
}

// eventInvoker turns an MQTT message into an invocation through the
// dispatcher, like a REST call with the message as args.
func eventInvoker(st store.Store, disp invoke.Dispatcher) events.Invoke {
	return func(ctx context.Context, module, function string, args []byte) error {
		fn, err := st.GetFunction(ctx, module, function)
		if err != nil {
			return err
		}
		req, err := invoke.ForFunction(fn, json.RawMessage(args), invoke.SourceMQTT)
		if err != nil {
			return err
		}
		_, err = disp.Invoke(ctx, req)
		return err
	}
}

// newMember is this controller's cluster membership (its row and its
// agents' links in the store); nil for a store without membership.
func newMember(st store.Store, id string, log *slog.Logger) (*cluster.Member, error) {
	ms, ok := st.(store.Membership)
	if !ok {
		return nil, nil
	}
	return cluster.NewMember(cluster.MemberConfig{Store: ms, ID: id, Logger: log})
}

// newFollower makes this controller follow what every controller commits
// to the store: desired sets, cloud events and timers after functions,
// modules, scripts or secrets changed; operator control and removals of
// agents at once. nil for a store without a change feed.
func newFollower(st store.Store, dist *distributor, fl *fleet.Fleet, log *slog.Logger) (*cluster.Follower, error) {
	feed, ok := st.(store.ChangeFeed)
	if !ok {
		return nil, nil
	}
	return cluster.NewFollower(cluster.FollowerConfig{Feed: feed, Content: dist.Changed, Agents: fl.RefreshAgents, Logger: log})
}
