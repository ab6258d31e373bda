// Package events runs FunLess "events" on the controller: MQTT subscriptions
// whose JSON messages invoke a function.
//
// A function's events are parsed and validated by controller/fnspec
// (fnspec.Event); an event with "local": true is an edge-local trigger, run
// by every agent that holds the function on the agent's own broker (package
// agent/triggers), never by the controller. Timer events are
// controller/timers' and the agents'. Bindings turns the cloud MQTT events
// into the subscriptions Manager.Sync takes.
//
// # Contracts
//
//   - Local events are not the controller's. Bindings leaves them out; the
//     Manager does not know the difference and would subscribe to whatever
//     it is given.
//   - Sync is declarative: after it returns, the live subscriptions are exactly
//     the given set. The controller calls it on start with every stored
//     function's cloud events ("restored after a controller restart") and after
//     every create, update and delete.
//   - One MQTT connection per broker (host:port), shared by every binding on
//     it, with clean session true: the Manager re-subscribes by itself on every
//     (re)connect, so nothing depends on broker-side session state. Messages
//     published while the controller is disconnected from a broker are not seen
//     (FunLess behaves the same); edge-local triggers are the durable path.
//   - Delivery is at-most-once per subscription: a message is acknowledged
//     (QoS 1 PUBACK) once it has been handed to an invocation slot, not when
//     the invocation finished.
//   - Invocations run concurrently, at most Config.MaxInFlight at a time. When
//     every slot is taken the broker connection stops reading, which is the
//     backpressure; it never drops a message it has read.
//
// This package must never import agent code, and never decide where a function
// runs: Invoke (the controller's dispatcher) does that.
package events
