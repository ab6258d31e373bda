// Package archtest holds no code, only tests that enforce the dependency
// rules of DESIGN.md with `go list`: protocol/, cache/, internal/activationid,
// internal/mqtttopic and internal/sealbox import only the standard library, internal/keypin
// (the REST certificate pin) only the standard library and protocol,
// agent/... never imports controller/..., internal/settings (both servers'
// settings table) imports neither, the agent binary links neither pgx nor
// fiber nor any controller package nor OpenTelemetry, the controller binary
// no OpenTelemetry SDK and no gRPC, the controller's layers stay apart
// (controllerRules: only the REST layer imports controller/api;
// controller/invoke and controller/fnspec import no layer above them), and
// the agent's local activations have one home (agent/activation;
// agent/localapi is HTTP only and agent/triggers MQTT only).
package archtest
