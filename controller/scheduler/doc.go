// Package scheduler decides which agent runs an invocation: [Pick] applies
// the default policy or an APP script (FunLess's tag-based scheduling
// language, parsed by [ParseAPP]) to a slice of [Candidate] agents.
//
// It must never talk to the store, to agents or to the network: it works on
// values handed to it (the controller snapshots its connected agents, their
// last load report and its own in-flight counters into Candidates), so a
// decision is a pure function, tested without any service, and takes tens of
// microseconds over 1,000 agents without allocating (BenchmarkPick).
// [PickRanked] makes the default policy's decision over candidates handed
// in [Order] (most available memory first) and stops once no later one can
// rank better: over 10,000 agents it usually reads a handful (FuzzPickRanked
// checks it against Pick).
//
// # Decisions FunLess leaves implicit
//
// Pick's documentation is the specification; in short:
//
//   - Capacity is in KiB on Function and bytes on Candidate; Wisp never
//     mixes KB and bytes (FunLess did).
//   - Default policy: valid = MemAvail ≥ capacity or no heartbeat yet; rank
//     by holding the code, then having metrics, then MemAvail − InFlight ×
//     capacity, then fewer in flight, then Name, then ID.
//   - max_concurrent_invocations: n means InFlight < n.
//   - capacity_used: (MemTotal − MemAvail + capacity) / MemTotal ≤ n%,
//     exact integer math; skipped for agents without metrics.
//   - Workers are matched by Name or ID, or, for an entry holding "=", by
//     a "key=value" label of the agent (Wisp's addition, [IsWorker]: labels
//     an operator sets from the controller reach scheduling); names not
//     connected are skipped;
//     "*" best-first orders by Name; random counts each agent once.
//   - Tag lookup: fn's tag, else "default", else the default policy. The
//     default tag, once used, never falls back further, so a decision runs
//     at most two tags and cannot loop.
//   - Hand-built Scripts: empty strategy is best-first, empty followup is
//     fail, non-positive limits are none, unknown values are
//     ErrInvalidScript; nothing in a Script can make Pick panic (FuzzPick
//     checks Pick against a slow reference implementation).
//
// Errors are [ErrNoWorker] (503 at the REST edge) and [ErrInvalidScript].
package scheduler
