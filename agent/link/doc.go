// Package link is the agent's side of the controller connection: it dials
// a controller over QUIC (outbound only, so NAT and firewalls are fine),
// pins the controller's key from the join token, joins once with the token's
// secret and then authenticates with the credential kept in the agent's
// state, sends load reports (heartbeats: on a change of its available
// memory, and at least every interval the controller asks for), and serves
// the streams the controller opens (invocations, code pushes, pings)
// through the executor. Liveness is QUIC's: keep-alives every 3 s, and a
// 6 s idle timeout on both sides (KeepAlivePeriod, IdleTimeout).
//
// A Link reconnects by itself with exponential backoff and jitter; an agent
// given several controllers runs one Link per address.
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
// handler have ended (the connection is closed first, which ends their
// reads and the contexts of invocations still running).
//
// It must never import controller packages.
package link
