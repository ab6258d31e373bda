// Package fnspec holds a function's settings as typed values: its events
// (MQTT triggers and timers, whose schedules internal/cron parses), sinks (CouchDB databases that receive its outputs),
// metadata (tag, capacity, idempotence) and config (environment, secret
// names, egress allowlist).
//
// The REST API parses what a user sends with [ParseEvents], [ParseSinks],
// [ParseMetadata] and [ParseConfig], once, at the boundary; the store keeps the typed
// [Spec] (as the normalised JSON of [Spec.Encode], so the stored encoding
// is the one Wisp always wrote) and reads it back with [Decode], which
// runs the same parsers; every other package reads the typed values. A
// sink copied into a queued delivery uses [EncodeSink] and [DecodeSink].
//
// # Bad stored data
//
// Settings that no longer parse (written by hand, or by a version that
// validated less) are decided once: [Decode] returns what it could read
// and an error naming each unreadable field. The store keeps that error on
// the function (store.Function.Unreadable), and such a function is never
// run: invoke.ForFunction refuses it (500), the fleet leaves it out of the
// agents' desired sets, and the cloud events and timers do not run for it. It is
// still listed, shown and deleted, and an update rewrites its settings.
// Running it without the sinks or the tag it was given would lose outputs
// or run it where it was kept from.
//
// # Must never
//
//   - do I/O (connecting a broker or a sink is controller/events' and
//     controller/sinks' job);
//   - change the JSON the REST API shows (FunLess's "events", "sinks" and
//     "metadata" fields).
package fnspec
