// Package timers runs an agent's edge-local timer triggers: the timers of
// its desired set (protocol.DesiredFunction.Timers, from events
// {"type":"timer","params":{...,"local":true}}). Every agent that holds the
// function runs them itself, from the desired set it persisted, so they
// keep firing while the link to the controller is down and after an agent
// restart without it.
//
// # Contract
//
//   - Each tick is one activation, run and recorded in the outbox by
//     Config.Invoke (agent/activation, source "local-timer"), which the
//     controller receives once when the link is back, like any edge
//     activation. Its args are {"scheduled":"<RFC 3339 UTC time>"}.
//   - internal/cron decides when a timer fires and states the missed-tick
//     rule: no catch-up after downtime (the agent stopped, the machine
//     asleep, a clock jump). A tick more than cron.DefaultGrace late is
//     skipped and counted (missed); the next run is the next tick after
//     now. A restarted agent therefore never runs a tick twice (unless the
//     wall clock went back), and never runs the ticks it slept through.
//   - A tick that comes while the previous run of the same timer still
//     runs is skipped and counted (overlap).
//   - A tick whose run could not be recorded (no code yet, the function's
//     queue full, the agent stopping, the outbox failing) is not retried:
//     it is counted (not_run) and the timer goes on.
//   - A timer the agent does not accept (a cron expression internal/cron
//     refuses, a period out of its bounds) is logged and ignored: the
//     controller validated it, so it is a newer or hostile controller's.
//   - Shutdown: Run stops the timers and gives running invocations
//     cron.DefaultDrainTimeout, then cancels them and waits for them.
//
// This package must never import controller code.
package timers
