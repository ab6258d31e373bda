// Package timers runs the controller's cloud timers: the timer events of
// stored functions that are not edge-local ({"type":"timer","params":
// {"cron":"..."}} or {"every":"..."}). Each tick invokes the function
// through the dispatcher, as a REST call or a cloud MQTT message does, with
// source "timer"; the dispatcher records the activation and feeds the
// sinks. Edge-local timers ("local": true) are the agents' (agent/timers):
// the fleet puts them in the desired sets.
//
// # Ticks
//
// internal/cron decides when a timer fires and states the rules: UTC,
// interval ticks aligned on the Unix epoch, no catch-up after downtime (a
// tick more than cron.DefaultGrace late is skipped and counted as missed;
// the next run is the next tick after now), and a tick that comes while
// the previous run of the same timer still runs is skipped and counted as
// an overlap. A tick's args are {"scheduled":"<RFC 3339 UTC time>"}.
//
// # Several controllers (issue 15)
//
// Every controller on one Postgres runs every cloud timer, and
// Config.Claimer decides which one runs a tick: controller/cluster's
// TickClaims inserts (timer key, scheduled time) into the timer_claims
// table with ON CONFLICT DO NOTHING, and the controller whose row went in
// runs the tick; the others count it as skipped ("claimed"). Every
// controller computes the same tick times (UTC, epoch-aligned), so no
// lease is needed and no controller is idle. A tick whose claimer dies
// before running it is not run (at most once); a tick the store cannot be
// asked about is skipped by that controller and may be run by another.
// Claims are pruned after an hour. Without a Claimer (the embedded store,
// one controller) every tick is this controller's.
//
// It must never import the REST layer or the fleet: it speaks
// controller/invoke.
package timers
