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
//   - Sync is declarative: after it returns, the live subscriptions (while
//     holding) are exactly the given set. The controller calls it on start with every stored
//     function's cloud events ("restored after a controller restart") and after
//     every create, update and delete.
//   - One MQTT connection per broker (host:port), shared by every binding on
//     it, and only while Hold runs: the controller runs Hold while it holds
//     the cluster's "events" lease (controller/cluster), so one controller
//     of a cluster is subscribed at a time; a lone controller (embedded
//     store) holds it all along. Sync records the wanted bindings on every
//     controller; the holder applies them. A controller not holding answers
//     the API's FunLess 207 with Check, a short probe connection of its own.
//   - One MQTT session per cluster and broker: the client id (ClientID) is
//     derived from Config.Cluster (the controller sets it to the cluster's
//     shared identity) and the broker, not from the controller, and the
//     session is persistent (clean session false). While no controller
//     holds it (the holder died and its lease has not expired yet: up to
//     about 6 s), the broker keeps the session's subscriptions and queues
//     its QoS 1 messages; the next holder connects under the same id and
//     receives them (so does the holder itself after a lost connection). It subscribes again on every (re)connect all the
//     same, since the broker may have lost the session. The broker also
//     allows one connection per client id: were two controllers ever to
//     connect at once, it would drop the older connection.
//   - Invocations run concurrently, at most Config.MaxInFlight at a time. When
//     every slot is taken the broker connection stops reading, which is the
//     backpressure; it never drops a message it has read.
//   - Delivery is at-most-once per subscription: a message is acknowledged
//     (QoS 1 PUBACK, sent by hand) once it has been handed to an invocation
//     slot, not when the invocation finished, and not before: a message read
//     while the holder stops, before a slot took it, is left unacknowledged
//     and the broker sends it to the next holder. Acknowledgements go out
//     before the DISCONNECT of a clean stop (paho writes them in order), so
//     a controller that loses or releases the lease hands over without
//     losing or repeating a message.
//   - A message the broker sends again (DUP set) after an acknowledgement
//     was lost with a connection, whose packet id and content match one of
//     the last 1,024 this controller handed to invocations, is acknowledged
//     without being invoked again (counted as "repeat").
//   - A broker no binding uses any more has its session ended by the
//     holder (a clean-session connection under its id), so the broker stops
//     queueing for it.
//   - Nothing accumulates on the controller's side of a persistent session:
//     paho keeps an incoming QoS 1 message in its in-memory store only until
//     it is acknowledged (every message is, but those left to the next
//     holder), each Hold makes new clients, and the repeat check keeps 1,024
//     entries per broker.
//
// # What can still be lost or repeated
//
//   - Repeated: messages the holder had handed to invocations when it was
//     killed (kill -9, a crash) or cut from the broker, whose PUBACK had not
//     reached the broker. The broker sends them again to the next holder,
//     which has no record of them (the repeat check above is per process).
//     The window is the messages in flight to the holder at that instant
//     (the broker's in-flight limit, 20 by default in Mosquitto).
//   - Lost: QoS 0 messages published while no controller is connected (the
//     broker queues only QoS 1 and 2 for an absent session, unless told
//     otherwise); messages beyond the broker's queue limit for the session
//     (Mosquitto's max_queued_messages, 1,000 by default); everything queued
//     when the broker itself restarts without persistence or expires the
//     session (persistent_client_expiration); a message bound to several
//     functions when the holder stopped after some of them had a slot (the
//     message is acknowledged: at most once); and, as before, messages
//     that came while a binding was not yet or no longer routed.
//   - A filter dropped while no controller held the session stays in the
//     broker's session until the holder drops its last binding on that
//     broker; its messages are received and dropped. A broker dropped while
//     no controller held its session keeps that session until the broker
//     expires it.
//   - A retained message is delivered again at every subscription, hence at
//     every takeover, as it was at every controller restart.
//
// This package must never import agent code, and never decide where a function
// runs: Invoke (the controller's dispatcher) does that.
package events
