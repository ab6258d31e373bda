// Package link is the agent's side of the controller connection: it dials
// a controller over QUIC (outbound only, so NAT and firewalls are fine),
// pins the controller's key from the join token, joins once with the token's
// secret and then authenticates with the credential kept in the agent's
// state, sends heartbeats, and serves the streams the controller opens
// (invocations, code pushes, pings) through the executor.
//
// A Link reconnects by itself with exponential backoff and jitter; an agent
// given several controllers runs one Link per address.
//
// It must never import controller packages.
package link
