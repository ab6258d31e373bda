// Package triggers runs an agent's edge-local MQTT triggers: functions whose
// events say "local": true are invoked by every agent that holds them, from
// messages on the agent's own broker (--mqtt-broker, default
// tcp://127.0.0.1:1883), so they keep firing while the link to the controller
// is down.
//
// # Delivery contract (read before changing anything here)
//
//   - Persistent session: the client id is stable per agent (ClientID) and
//     CleanSession is false, QoS 1. The broker keeps the subscriptions and
//     queues messages while the agent is disconnected or restarting, and
//     delivers them when it comes back. How many it keeps is the broker's
//     setting (Mosquitto: max_queued_messages, 1000 by default; raise it on
//     boxes that must absorb long outages).
//   - A message is acknowledged (PUBACK) only after Invoke returned nil for
//     every function bound to its topic. The agent's Invoke appends the
//     activation to its durable outbox before it returns, so a crash between
//     receipt and acknowledgement makes the broker deliver the message again
//     instead of losing it.
//   - At-least-once execution: every delivery gets a fresh activation id
//     (internal/activationid). MQTT message ids are reused and change across
//     sessions, so nothing in a redelivered message identifies the first
//     delivery; a message redelivered after a crash, after a failed Invoke, or
//     after a connection loss that dropped its PUBACK runs the function again
//     under a new id, unless Invoke recognises it: every call carries a
//     Message with the MQTT DUP flag (Redelivered), and the agent's Invoke
//     (agent/activation's RunMessage) stores a key of (function, topic,
//     payload) in the same journal frame as the outbox entry, and
//     acknowledges a redelivered (DUP) message whose key it already holds
//     without running it. That makes a kill -9 between the outbox append
//     and the acknowledgement exactly-once. The remaining cases: a message
//     never appended before the crash runs once (it never ran), and a
//     redelivered message whose payload equals another message already run
//     for the same function on the same topic is taken for that one and
//     skipped.
//   - When Invoke fails the message stays unacknowledged and Local restarts its
//     session after a backoff (Config.RedeliverDelay, doubling up to
//     Config.MaxReconnectInterval) so the broker redelivers it; an unacked
//     message also holds one of the broker's in-flight slots for this client
//     (Mosquitto: max_inflight_messages, 20), which is why it must not be left
//     waiting for a reconnect that may never come.
//   - Messages that are not JSON, and messages on a topic no binding wants any
//     more, are counted, logged and acknowledged: never invoked, never retried.
//   - Run connects only after the first Sync, so messages the broker queued
//     while the agent was away always find their functions. The agent calls
//     Sync with its persisted desired set before (or right after) Run.
//   - Handlers run concurrently (SetOrderMatters(false)), at most
//     Config.MaxInFlight at a time; the broker's in-flight window bounds them
//     too, since a message is unacked while its invocation runs. Messages on
//     one topic may therefore start out of order.
//   - Shutdown: Run stops taking messages, gives running invocations
//     Config.DrainTimeout, disconnects, then cancels the context of those
//     still running and waits for them: no invocation it started outlives
//     it. Their messages stay unacknowledged and come back.
//
// This package must never import controller code.
package triggers
