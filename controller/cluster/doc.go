// Package cluster is what lets several controllers share one Postgres
// (issue 15): each controller process has an instance id; committed
// changes reach every controller through the store's ChangeFeed; each
// controller's presence and its sessions with agents are kept in the
// store; singleton work (cloud MQTT events, CouchDB sink delivery, cloud
// timer ticks) is claimed through the store so each event and each result
// is handled once and is taken over when its owner dies.
//
// # Change feed: Follower
//
// Postgres reports every committed change of what controllers act on
// (functions and their kept versions, modules, scripts, secrets,
// subjects, join tokens, and what operators set on agents) with
// LISTEN/NOTIFY from triggers (migration 0014), whichever controller made
// it, or an operator by hand in SQL. A Follower watches the feed and calls
// two reactions of the controller, each coalesced (the changes that come
// within 25 ms of the first make one call) and run apart from the other
// (a content resync waiting for an MQTT broker does not hold up a
// removal):
//
//   - functions, modules, scripts, secrets: Content, which re-syncs every
//     agent's desired set (an agent whose set did not change is sent
//     nothing, so the controller's own changes, which it also learns from
//     the feed, cost a comparison), the cloud MQTT subscriptions and the
//     cloud timers;
//   - agents: Agents, which applies what operators set (cordon, labels,
//     memory cap) to this controller's sessions at once and closes the
//     session of an agent another controller removed.
//
// After every (re)connection of the feed, and every 30 s whatever the
// feed says (the safety net: a notification lost to a bug, a trigger
// dropped by hand), both run for everything. Notifications are lost only
// while the feed's connection is down, and a reconnection re-reads all,
// so a change reaches every controller at the latest 30 s after it, and
// normally within tens of milliseconds (docs/benchmarks.md).
//
// # Membership: Member
//
// A Member keeps this controller's row in the store's controllers table
// (instance id, REST and QUIC addresses, started, last seen), refreshed
// every second, and the store's agent links: one row per session between
// an agent and a controller (agent, controller, since, and what the agent
// said in that session's hello), written when a session is up and removed
// when it ends, in batches, never per heartbeat. A controller silent for
// 10 s is dead: any live controller removes its row and, with it, its
// links; one that was only stalled finds its row gone at its next
// heartbeat, makes it again and writes its links again. A controller that
// stops removes its own row. GET /v1/agents is then one read on any
// controller: every stored agent with the live controllers it has
// sessions with (controller/fleet.Fleet.Agents).
//
// Times of liveness are the database's clock, so controllers whose clocks
// differ agree on who is dead. The embedded store is single-controller:
// with it every claim is this controller's, the change feed is in process
// (its own commits), and membership is kept in memory.
//
// # Notes
//
// NOTIFY channels are per database: the triggers put the table's schema
// first in each payload, and a controller ignores the notifications of
// other schemas (several Wisp installations, or parallel tests, may share
// one database).
//
// It must never import the REST layer (controller/api). The controller's
// reactions are handed to the Follower as functions (controller/server
// wires them).
package cluster
