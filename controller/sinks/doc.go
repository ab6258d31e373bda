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
// oldest first, groups them by sink target (server, database and
// credentials) into batches of up to Config.BatchSize, writes each batch in
// one request with a [Sender] ([Couch] for CouchDB: _bulk_docs) under a
// bounded number of concurrent requests, and marks each delivery delivered,
// or failed with the time of its next attempt (exponential backoff with
// jitter). A document the server refuses fails alone; a request that fails
// as a whole fails every delivery of its batch.
//
// Batches are what make a burst affordable: pouchdb-server takes about
// 25 ms per single-document write, and well under 1 ms per document in a
// batch of 200. Measured with
// `go test -run '^$' -bench BenchmarkWorker -benchtime 5500x -count 3`
// against pouchdb-server 4.2.0 (in memory) on a shared 2-vCPU VM: 210-480
// deliveries/s with batches of 1 (as with one PUT per document before
// batches), 6,000-9,200/s with batches of 200, so 5,500 deliveries queued at
// once take under a second instead of 11-26 s.
//
// The CouchDB document _id is the activation id, so a delivery that is
// repeated (a crash between the write and [Queue.Delivered], a replayed
// outbox) meets a conflict (409, or "conflict" for one document of a batch),
// which counts as delivered: each activation is one document, however often
// it is sent.
//
// # Several controllers
//
// Controllers sharing one Postgres share its delivery queue, and one of
// them delivers: the controller runs [Worker.Run] while it holds the
// cluster's "sinks" lease (controller/cluster). Every controller records
// activations and queues their deliveries; the one that records one kicks
// its worker, which does nothing unless the worker runs there ([Worker.Kick]);
// the holder also polls the queue every second, so results recorded by
// another controller are delivered within about a second. When the holder
// dies, another takes the lease within a few seconds (TTL 5 s + 1 s) and
// delivers what is pending. A write the old holder had in flight and did
// not mark delivered is sent again and meets a conflict (counted as
// delivered): each result stays one document. [Worker.Health] is per
// process: a controller that does not hold the lease has none to show.
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
