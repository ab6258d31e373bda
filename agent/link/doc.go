// Package link is the agent's side of the controller connections: it dials
// each controller over QUIC (outbound only, so NAT and firewalls are
// fine), pins the controller's key from the join token, joins once with
// the token's secret and then authenticates with the credential kept in
// the agent's state, sends load reports (heartbeats: on a change of its
// available memory, and at least every interval the controller asks for),
// and serves the streams the controller opens (invocations, code pushes,
// pings) through the executor. Liveness is QUIC's: keep-alives every 3 s,
// and a 6 s idle timeout on both sides (KeepAlivePeriod, IdleTimeout).
//
// A Link is one connection, kept up by Run with exponential backoff and
// jitter. A Pool keeps a Link with every controller of the agent: one per
// address its --controllers resolve to (a host name may stand for a whole
// cluster), resolved again every ResolveEvery and whenever a link goes
// down; a new address gets a link, and a link whose address is no longer
// resolved ends once its session does (a failed resolution changes
// nothing). Of a name's addresses only one family is used (the first
// one's): a dual-stack controller would otherwise get two links.
//
// The links of a Pool share (pool.go's shared):
//   - one identity (identity.go's keeper). With a join token and no
//     identity exactly one link presents the token; the others wait for
//     the identity, then present the credential, so a single-use token is
//     spent once. A controller that answers Unauthorized only marks its
//     link refused; the agent gives the identity up only when every
//     link's latest answer refused it (a link without an answer, its
//     controller down, keeps it): then it joins again with the token, or
//     stops with ErrRefused. A controller on a wrong or new database thus
//     never costs the agent the identity the right ones accept; removal,
//     which is in the one store, is refused by all of them.
//   - one outbox drain: a single link at a time (the first up) sends the
//     outbox, so two controllers never record and acknowledge a batch at
//     once; when its session ends another link takes over.
//   - the desired set: every controller sends the set it computes from the
//     one store; the last received is stored, and one identical to the
//     stored set is not stored again. A lagging controller's older set is
//     corrected by its next sync (controller/fleet's desired.go).
//   - which link holds a session with which controller (by the Welcome's
//     controller id): a link whose session the controller replaced with
//     another of this agent's (CloseSuperseded: one controller reached
//     through two addresses) stands by while that one lasts.
//
// A session the controller closes with CloseShutdown (a rolling restart:
// it drained first) is no error: the link reconnects after a random delay
// of RestartDelay/5 to RestartDelay, so that a controller's agents do not
// all come back at once, and logs its dial failures until the controller
// is back at Info level.
//
// Every Hello reports the crashes the agent has not yet seen a controller
// record (agent/state's quarantine); the controller's Quarantine sets replace
// what the agent holds from controllers. When the agent stops it drains:
// invocations in flight finish, new ones are answered Result{Draining}
// without running, and only then is the connection closed with
// CloseShutdown, which tells the controller that every stream it accepted
// was answered (protocol doc: Delivery).
//
// Run owns every goroutine it starts: when it returns, the session's
// heartbeats, control reader, outbox drain, stream acceptor and every stream
// worker have ended (the connection is closed first, which ends their
// reads and the contexts of invocations still running). Stream workers
// serve one stream after another, so that an invocation does not grow a
// fresh goroutine's stack each time; there are never more of them than
// streams served at once, and one idle for 2 s ends. A Pool's Run
// returns once every link's Run has.
//
// It must never import controller packages.
package link
