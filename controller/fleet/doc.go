// Package fleet is the controller's side of its agents: a QUIC listener
// that authenticates agents (join token secret on first contact, then the
// credential issued at join), keeps one Session per connected agent with its
// load from heartbeats and the digests it holds, and opens streams to it for
// invocations and code pushes. Dispatcher puts the scheduler in front of it
// and implements invoke.Dispatcher, which the REST API and the cloud events
// call; the fleet never imports the REST layer (internal/archtest). Every
// goroutine it starts ends before Serve returns.
//
// An agent whose connection drops or goes silent (QUIC idle timeout: the
// agents keep their connections alive with keep-alives, not with load
// reports), or that sends no frame for several load-report intervals, is
// marked disconnected; it comes back as the same agent when it reconnects
// with its credential. Load reports (Heartbeat frames) come when an
// agent's memory changed, and at least every HeartbeatInterval (30 s).
//
// Scheduling reads no lock across agents: the default policy reads the
// scheduling index (index.go: connected sessions in scheduler.Order, so a
// decision usually reads a handful), an APP script a snapshot of every
// schedulable agent. Per agent the fleet keeps one goroutine reading its
// control stream and one accepting its outbox streams (quic-go adds two). Only an operator deletes an agent (Remove); what operators set
// on agents (cordon, labels, memory cap) is kept in the store and applied
// by every controller (control.go) as soon as the store's change feed
// reports it (RefreshAgents). Desired sets follow the stored functions
// (desired.go): SyncDesired reads what they are made of once, bringing
// the in-memory catalog of every function's desired form up to date, and a
// session is sent only what changed for its agent, as a DesiredDelta on
// the set it sent last, or its full set at connection and when a delta
// cannot say the change (desired_catalog.go says when and why that is
// correct).
// With several controllers (Config.Cluster), sessions are reported to the
// cluster's membership as they come and go, and Agents lists every agent
// of the cluster with the controllers it is connected to.
//
// Synchronous invocations run at most once (docs/delivery.md): Session.Invoke
// reports "run it elsewhere" only when the Invoke provably never reached the
// agent's runtime, and the Dispatcher never runs a call again once it may
// have run, except an idempotent function on a live agent that did not start
// it in time. The fleet also keeps the quarantine (quarantine.go): code an
// agent reported dying of, stored and sent to every agent, and code held in
// memory while an agent that went silent running it may be restarting.
//
// When Serve's context ends the fleet drains for a rolling restart
// (shutdown.go): no new agents or dispatches, the invocations it runs on
// agents return (Config.DrainTimeout), then every session is closed with
// protocol.CloseShutdown. An agent has a session with every controller of
// its cluster; each controller sends it the desired set it computes from
// the one store, in the order of its store reads (desired.go).
//
// It must never run a call on a second agent after the first may have
// started it (unless the function is idempotent and the first agent is
// alive), nor answer "no worker" for a call that may have run.
//
// It must never schedule onto a cordoned agent, nor believe more memory of
// an agent than it reported at join or an operator capped it at.
//
// It must never hold a database transaction open across network I/O, and
// scheduling must not touch the database: everything Pick needs is in
// memory here.
package fleet
