// Package fleet is the controller's side of its agents: a QUIC listener
// that authenticates agents (join token secret on first contact, then the
// credential issued at join), keeps one Session per connected agent with its
// load from heartbeats and the digests it holds, and opens streams to it for
// invocations and code pushes. Dispatcher puts the scheduler in front of it
// and implements the REST API's Invoker.
//
// An agent that misses heartbeats, or whose connection drops, is marked
// disconnected; it is never deleted, and it comes back as the same agent
// when it reconnects with its credential.
//
// It must never hold a database transaction open across network I/O, and
// scheduling must not touch the database: everything Pick needs is in
// memory here.
package fleet
