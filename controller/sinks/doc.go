// Package sinks stores the outputs of successful invocations in the sinks a
// function names (FunLess "sinks"; the only type is "couchdb"), exactly once
// per activation and without losing any when a sink is down.
//
// # How a result reaches a sink
//
// The controller records an activation and, in the same step, one [Delivery]
// per sink of the function in a durable [Queue] (the store implements it;
// [MemQueue] is the in-memory one for tests and the embedded single-process
// case). It then calls [Worker.Kick]. The [Worker] takes pending deliveries
// oldest first, writes each with a [Sender] ([Couch] for CouchDB) under a
// bounded number of concurrent writes, and marks it delivered, or failed with
// the time of its next attempt (exponential backoff with jitter).
//
// The CouchDB document _id is the activation id, so a delivery that is
// repeated (a crash between the write and [Queue.Delivered], a replayed
// outbox) meets a 409 conflict, which counts as delivered: each activation is
// one document, however often it is sent.
//
// # Contracts
//
//   - Nothing is dropped: a delivery leaves the queue only through
//     [Queue.Delivered]. A sink that keeps failing (down, wrong password,
//     document rejected) is retried at the maximum backoff until it works or
//     the store drops its deliveries (for instance when the function is
//     deleted); its failures show in [Worker.Health] and in metrics.
//   - Passwords never leave the package in clear: [Params] format and log
//     themselves redacted, and every error this package returns has the
//     sink's credentials removed. Never log a sink URL through anything but
//     [Params.Redacted] or [Params.String].
//   - It never decides which sinks a function has; the deliveries it is given
//     carry their sink parameters.
package sinks
