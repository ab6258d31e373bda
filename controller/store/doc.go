// Package store keeps the controller's durable state: modules, functions and
// their code, subjects (API users), APP scheduling scripts, the edge agents
// known to the controller with the join tokens that let them join, the
// record of every activation, the durable queue of results still to be
// delivered to sinks, and the quarantine of code that was running when an
// agent died.
//
// There is one interface, Store, and two implementations in this package:
// Postgres (a pgx pool, for production and for several controllers sharing one
// database; see OpenPostgres) and Embedded (one bbolt file in the data dir,
// used when no DSN is given; see OpenEmbedded). Both live here rather than in
// sub-packages so that callers write store.OpenPostgres / store.OpenEmbedded
// and share one errors.go. Both pass the same contract test suite, which lives
// in the sub-package storetest so that a future implementation (or a failing
// fake) can run it too.
//
// # Rules every implementation keeps
//
//   - Names are validated by the caller (controller/api); the store does not
//     re-check them but never interprets them either (they are parameters,
//     never SQL text).
//   - Code bytes are stored once per digest ("sha256:<hex>"); functions refer
//     to their code by digest; so do the kept versions of functions
//     (FunctionVersions). Code no function and no kept version refers to is
//     dropped in the same transaction that dropped its last reference
//     (delete or update of a function, delete of a module, a prune of
//     versions). A write whose Digest does not match its
//     code fails with ErrDigestMismatch; Function.Size is set from the code.
//   - Every write is atomic: a failed call changes nothing.
//   - Modules, scripts and activations have an Owner, the creating subject's
//     name; "" is the admin (the default module, and rows from before
//     owners). The store keeps it and filters by it (ActivationFilter.Owner)
//     but decides nothing: controller/api says who sees what. An activation
//     takes its module's owner in the transaction that records it.
//   - The default module "_" always exists and cannot be deleted or renamed
//     (nor can another module be renamed to "_"); ErrDefaultModule is checked
//     before existence. Renaming a module to its own name is a no-op.
//   - Sorting is by bytes (Go string order, Postgres COLLATE "C"), so both
//     implementations list in the same order whatever the database locale.
//   - Timestamps are set by the store from the controller's clock, in UTC,
//     truncated to microseconds (Postgres's precision). UpdateFunction keeps
//     Created and sets Updated. Times the caller gives (JoinToken.Expires,
//     TouchAgent's seen) are kept in UTC, truncated the same way; a zero
//     Expires means never and stays zero.
//   - Credentials are never stored, only their sha256 (Subject.TokenHash,
//     JoinToken.SecretHash, Agent.CredentialHash), each unique. Module
//     secrets (SecretStore) are stored sealed by controller/secrets: the
//     store keeps a key id and opaque bytes and never sees a value. They
//     belong to their module by its id (a rename moves them, a module
//     delete deletes them). The embedded store's secrets bucket came
//     without a schema version: open creates it when missing, as nothing
//     needs backfilling. A join token
//     is expired when its Expires is not after the controller's clock (not
//     the database's); JoinTokenByHash then answers ErrNotFound, but
//     ListJoinTokens still lists it so that it can be deleted.
//   - Events, Sinks, Metadata and Script.Source are kept verbatim; nil stays
//     nil. Agent.Labels are kept in the order given. Lists are never nil
//     (empty slices instead).
//   - Activations are recorded once per id: a second record of an id (an
//     outbox replay) changes nothing and reports created=false, in a batch
//     as alone. Recording an ok activation queues, in the same transaction,
//     one delivery per sink given, with a copy of that sink's JSON, so that
//     exactly one delivery per (activation, sink) ever exists and a later
//     edit of the function does not redirect it. Activations outlive their
//     function and module; a delivery leaves the queue only by DeliveryDone.
//   - An activation's Truncated flag is kept as given (the recorder bounds
//     records before they reach the store); a SinkOutput given with it is
//     copied into each of its deliveries, which then deliver it instead of
//     the record's Output.
//   - Records leave only by the three prune calls, which remove the oldest
//     first, in one short transaction per call, and never an activation
//     that still has a queued delivery.
//   - A digest is quarantined at most once: the first report is kept and a
//     second one changes nothing (created=false) until ReleaseDigest. The
//     quarantine names a digest, not a function, and has no reference to the
//     code: deleting every function that used it releases nothing. Its
//     reason comes from an agent and is kept as bounded, valid UTF-8 text.
//   - Errors wrap the sentinels of errors.go so callers use errors.Is.
//
// # Several controllers: the change feed and membership
//
// Both stores are a ChangeFeed (changes.go): every committed change of a
// ChangeKind is reported to every watcher, after its commit. Postgres
// reports it from triggers (migration 0014) with NOTIFY on channel
// wisp_changes, payload "<schema>:<kind>:<key>", to every controller on
// the database whichever made the change (by hand in SQL too); the
// watcher holds one connection of its own with LISTEN, reconnects with
// backoff, and reports ChangeAll after each (re)connection, since
// notifications sent while it was down are lost. A notification of
// another schema, of an unknown kind or not of that form is ignored, and
// a key over 1 KiB dropped. Not reported: TouchAgent (every agent
// connection writes it), activations, deliveries, the quarantine. The
// embedded store reports its own commits in process; a watcher's queue
// holds each distinct change once and collapses into one ChangeAll past
// 1,024 of them, so a slow watcher never holds up a writer nor loses the
// fact that something changed.
//
// Both are a Membership (cluster.go): which controllers share the store
// (a heartbeat row each, dead after a silence) and which agents each has
// sessions with (agent links, removed with their agent, their session or
// their controller). Postgres keeps them in tables every controller reads,
// with the database's clock for liveness; the embedded store keeps them
// in memory (one process holds its file, and a restarted controller has
// no sessions). ClusterAgents lists every agent with its links in one
// read.
//
// # Notes
//
// Both implementations also have CodeCount, the number of distinct code blobs
// stored; it exists for tests and metrics and is not part of Store.
//
// Postgres also keeps what several controllers coordinate through
// (leases.go, migration 0015; controller/cluster uses it): leases for
// singleton work (TakeLease, ReleaseLease; expiries on the database's
// clock), claimed cloud timer ticks (ClaimTick, PruneTickClaims) and the
// cluster's TLS identity, its key sealed by controller/secrets' key
// (StoreIdentity, LoadIdentity, RewrapIdentity). Lease statements use a
// pool of their own (two connections, made at the first lease), so that
// a renewal never queues behind API queries for a connection. The
// embedded store serves one controller and keeps none of it.
//
// Cached (cached.go) wraps a store whose change feed keeps it true and
// answers the reads of every invocation — a token's subject, a function's
// record, a module's owner — from memory; docs/decisions.md (issue 16,
// point 5) states its rules.
//
// Neither gives the room of removed records back to the file system. bbolt
// keeps the freed pages in its file for later writes, so the file keeps the
// largest size it ever had; CompactEmbedded rewrites a file (its controller
// stopped) without them. Postgres reuses the room of deleted rows once
// (auto)VACUUM has seen them; VACUUM FULL gives it back.
//
// Postgres applies its embedded migrations (migrations/NNNN_name.sql) at open,
// under a transaction-scoped advisory lock keyed by the current schema, so
// several controllers may start at once. Embedded keeps its schema version in
// meta/version, upgrades an older file in place when it opens it, and refuses
// a file written by a newer Wisp. testdata/embedded-v<N>.db holds a file
// written by each schema version N; the tests open every one. Fields added
// to a JSON record (a function's config, issue 14) are additive and absent
// in older records, and buckets that need no backfilling (versions/, see
// additiveBuckets) are created on every open: neither needs a schema
// version bump.
//
// The store is pure persistence: it must never import agent, api or
// scheduler packages, and it never talks to agents.
package store
