// Package archtest holds no code, only tests that enforce the dependency
// rules of DESIGN.md with `go list`: protocol/ and cache/ import only the
// standard library, agent/... never imports controller/..., internal/settings
// (both servers' settings table) imports neither, internal/keypin (the REST
// certificate pin) only the standard library and protocol, and the agent
// binary links neither pgx nor fiber nor any controller package.
package archtest
