// Package state is the agent's durable state: one bbolt file in the agent's
// data dir holding its identity (id, credential, the controller key it
// pinned), the code of every function it was given, keyed by digest, its
// desired set, the outbox of locally run activations and the quarantine of
// code that crashed an agent, with an outbox journal beside it
// (<file>.journal, see journal.go) and a crash-marker file (<file>.running,
// see running.go) that says which code is compiling or running now.
//
// # Layout
//
//	meta/
//	    version      -> "1"
//	    desired_digest -> the stored desired set's digest (32 bytes;
//	                    absent: a set that came without one), written in
//	                    the same transaction as desired/: a DesiredDelta
//	                    applies only when it is the delta's base
//	                    (edge.go ApplyDesired). An addition: version "1"
//	                    still, an older agent ignores it.
//	identity/
//	    agent_id     -> "ag_..."       (empty until the first join succeeded)
//	    credential   -> secret bytes    (issued by the controller at join)
//	    controller   -> pinned public-key fingerprint (sha256 of the SPKI)
//	code/
//	    <digest>     -> wasm bytes      ("sha256:<hex>" of exactly these bytes)
//	desired/
//	    <module>/<name> -> protocol.DesiredSet with that one function
//	                       (its local topics and timers too: the agent
//	                       runs them from here, offline and after a
//	                       restart; its Secrets left out)
//	desiredsecrets/
//	    <module>/<name> -> key id, NUL, sealbox's sealing of that function's Secrets
//	outbox/
//	    <activation id> -> protocol.OutboxEntry (ids sort by time: oldest first)
//	seen/
//	    <message key>   -> activation id   (trigger messages already run)
//	seenorder/
//	    <activation id> -> message key     (prunes seen/ beyond 100,000 keys)
//	quarantine/
//	    <digest>        -> QuarantineEntry (JSON: reason, since, reported)
//
// # Contracts
//
//   - Every write but an outbox append is one bbolt transaction, fsync'd
//     before it returns: what
//     PutCode returned nil for survives kill -9.
//
//   - Code is checked against its digest on the way in; a mismatch is
//     refused, so a corrupted transfer is never stored under a digest that
//     the runtime trusts.
//
//   - AppendOutbox returns only once the entry is fsync'd (in the journal;
//     bbolt gets it in the background, and Open replays the journal
//     first); concurrent appends share one fsync, a lone append is not
//     delayed. Outbox and Seen see an append as soon as it returned.
//     AppendOutboxUnsynced returns before the fsync. An entry leaves the
//     outbox only through AckOutbox, after the controller recorded it.
//
//   - The file is opened with a timeout: a second agent on the same data dir
//     gets ErrLocked instead of hanging.
//
//   - MarkRunning is on every invocation's path: it writes the crash-marker
//     file (two pwrites to the page cache, no fsync, no transaction), so a
//     mark survives kill -9 and OOM kills but not a power cut. Open
//     quarantines whatever the previous process left marked before it
//     returns, so nothing can run such code after a crash; Close clears the
//     marks (an orderly stop is not a crash), so close the state only after
//     the runtime stopped.
//
//   - Quarantined is read without a transaction (an in-memory copy of the
//     quarantine bucket, replaced after every write); SetQuarantine replaces
//     what a controller sent before and never drops a crash no controller
//     has recorded yet (see quarantine.go).
//
//   - Secret values (DesiredFunction.Secrets) never reach the file in
//     clear: they are sealed (AES-256-GCM, the function's key as
//     additional data) with a key in its own file beside it
//     (SecretsKeyFile, 0600, made when first needed), so a copy of the
//     bbolt file alone reveals nothing. Values that do not open (the key
//     file lost or replaced) are left out until the next desired set.
//
// It must never import controller packages.
package state
