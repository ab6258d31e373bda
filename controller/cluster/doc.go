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
// # Leases
//
// Work that one controller of a cluster must do alone runs under a named
// lease (Leases.Run): "sinks" (the CouchDB delivery worker), "events"
// (the cloud MQTT subscriptions) and "pruner" (activation retention, whose
// DELETEs must not run on every controller at once). A lease is one row of the leases table
// (store.Postgres.TakeLease): an owner (the holder's instance id), an
// epoch that grows at each change of owner, and an expiry. One statement
// takes or renews it: an INSERT for a lease never taken, else an UPDATE
// whose WHERE is "the owner is me, or it has expired", so two contenders
// are ordered by the row's lock and one wins.
//
// Clocks: the expiry is the database's now() plus the TTL (5 s), and only
// the database's now() decides whether it has passed; the controllers'
// wall clocks play no part, so a controller whose clock is wrong neither
// steals a lease nor keeps one. The holder renews every second and
// measures on its own monotonic clock how long it may keep the lease:
// the database ran the statement after the holder sent it, so the lease
// lasts at least until send time + TTL on the holder's clock, and the
// holder stops its work at send time + TTL - Margin (2 s) unless a later
// renewal answered. The work's context is cancelled the moment a renewal
// fails (the database is unreachable: the holder cannot know whether
// another controller has taken over), answers that another controller has
// the lease, or has not answered in time. So the old holder's work has
// stopped before any other controller can take the lease, as long as the
// work returns within Margin of its context ending (the sink worker's
// drain is 1 s, the MQTT disconnect is immediate); Run logs a warning
// when it took longer. Two holders therefore never run the work at once,
// but for work that overruns the margin, and then for at most that
// overrun. After a loss the controller keeps trying every second; a
// transient error costs a restart of the work on the same controller.
//
// Takeover: a holder that stops cleanly releases its lease (the expiry
// becomes the database's now()), and another controller takes it at its
// next attempt, within a second. A holder that dies (kill -9, host lost)
// leaves its row until it expires: another controller takes it within
// TTL + 1 s of the dead one's last renewal. The metric
// wisp_controller_lease_held{lease} is 1 on the holder (so its sum over a
// cluster's controllers is 1 per lease, 0 during a takeover);
// wisp_controller_lease_lost_total{lease} counts losses. Acquisitions,
// losses (with the reason) and releases are logged with the lease's name,
// owner and epoch.
//
// A lease row written by hand: no controller writes an expiry more than
// store.MaxLeaseTTL (1 min) ahead, so a row expiring further in the future
// (written by hand, or left by a database clock that jumped back) is taken
// by the next controller that asks. A row within that bound for an owner
// that does not exist stops the lease's work until it expires (at most a
// minute); an operator can end it at once with
// DELETE FROM leases WHERE name = 'sinks' (or 'events'): the next attempt
// makes a new row. The database's clock must not jump forward: every
// lease would expire at once while its holder still counts on it (NTP
// slewing is fine).
//
// With the embedded store (LeaseConfig.Store nil) this controller is the
// only one: every lease is always its own and the work runs for the whole
// of Run, with wisp_controller_lease_held at 1.
//
// # Timer ticks
//
// Cloud timers are not under a lease: every controller computes the same
// ticks, and TickClaims (controller/timers' Claimer) lets the one whose
// claim of (timer key, scheduled time) is inserted first run each tick.
//
// # Identity
//
// The TLS identity agents pin (and the REST API's self-signed
// certificate, which the CLI pins) is shared by the controllers of a
// cluster through the store: controller/fleet.SharedIdentity states the
// rules.
//
// It must never import the REST layer (controller/api) or the fleet
// (which may one day import it). The controller's reactions are handed to
// the Follower as functions (controller/server wires them).
package cluster
