// Package state is the agent's durable state: one bbolt file in the agent's
// data dir holding its identity (id, credential, the controller key it
// pinned), the code of every function it was given, keyed by digest, and
// (later) its desired set and outbox.
//
// # Layout
//
//	meta/
//	    version      -> "1"
//	identity/
//	    agent_id     -> "ag_..."       (empty until the first join succeeded)
//	    credential   -> secret bytes    (issued by the controller at join)
//	    controller   -> pinned public-key fingerprint (sha256 of the SPKI)
//	code/
//	    <digest>     -> wasm bytes      ("sha256:<hex>" of exactly these bytes)
//	desired/
//	    <module>/<name> -> protocol.DesiredSet with that one function
//	outbox/
//	    <activation id> -> protocol.OutboxEntry (ids sort by time: oldest first)
//
// # Contracts
//
//   - Every write is one bbolt transaction, fsync'd before it returns: what
//     PutCode returned nil for survives kill -9.
//   - Code is checked against its digest on the way in; a mismatch is
//     refused, so a corrupted transfer is never stored under a digest that
//     the runtime trusts.
//   - AppendOutbox returns only once the entry is fsync'd; concurrent appends
//     share one commit (group commit), a lone append is not delayed. An
//     entry leaves the outbox only through AckOutbox, after the controller
//     recorded it.
//   - The file is opened with a timeout: a second agent on the same data dir
//     gets ErrLocked instead of hanging.
//
// It must never import controller packages.
package state
