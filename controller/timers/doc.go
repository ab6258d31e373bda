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
// Today one controller runs every cloud timer. When several share one
// Postgres, each would run each tick: Config.Claimer is the seam. Every
// controller computes the same tick times (UTC, epoch-aligned), so a
// claim keyed by (timer key, scheduled time), e.g. an INSERT ... ON
// CONFLICT DO NOTHING into a table of claimed ticks, lets exactly one of
// them run it; the others count the tick as skipped ("claimed"). Nothing
// else here needs to change. Without a Claimer every tick is this
// controller's.
//
// It must never import the REST layer or the fleet: it speaks
// controller/invoke.
package timers
