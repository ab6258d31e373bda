// Package archtest holds no code, only tests that enforce the dependency
// rules of DESIGN.md with `go list`: protocol/, cache/, internal/activationid
// and internal/mqtttopic import only the standard library, agent/... never
// imports controller/..., the agent binary links neither pgx nor fiber nor
// any controller package, and the agent's local activations have one home
// (agent/activation; agent/localapi is HTTP only and agent/triggers MQTT
// only).
package archtest
