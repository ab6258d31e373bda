// Package cli is the `wisp` command line: the FunLess `fl` habits (fn, mod,
// app, admin) on top of the controller's REST API (openapi/openapi.yaml),
// plus `fn new`/`fn build` for function projects (internal/fntemplate) and
// `deploy`, which creates or updates a module and its functions from a YAML
// manifest (manifest.go reads it strictly, deploy.go compares and applies;
// docs/manifest.md). Deploy must never write before everything is checked
// (manifest, code, secrets), never write what is unchanged, and never delete
// a function without --prune.
//
// Run is the whole program without the process: cmd/wisp's main only wires
// os.Args, the standard streams and os.Getenv into it, and tests call it
// in-process. Every command is built fresh per Run, so there is no global
// state.
//
// Settings come from defaults, then the config file (--config,
// WISP_CLI_CONFIG, else $XDG_CONFIG_HOME/wisp/config.yaml or
// ~/.config/wisp/config.yaml, mode 0600), then WISP_HOST / WISP_TOKEN, then
// --host / --token. The former WISP_CONFIG is still read, with a warning.
//
// The host may be a list: the controllers of one cluster, separated by
// commas (or a YAML list in the file). Requests go through
// internal/failover: to one controller, starting at a random one and
// keeping to the last that answered, and to the next only when the failure
// proves the request never reached the first one's handler (no connection,
// nothing written, a keep-alive connection the server had closed, a write
// whose body was held back until a "100 Continue" that never came, or a
// 503). An invocation whose connection broke after it was sent may have
// run: the CLI says so and never sends it again.
//
// A TLS fingerprint (tls_fingerprint, WISP_TLS_FINGERPRINT,
// --tls-fingerprint; internal/keypin) pins the controller's key: over
// https:// only that key is trusted, no CA is consulted, and an http:// host
// is refused. It must never fall back to another trust: a mismatch is an
// error naming both keys, and with several controllers it stops the
// request rather than skipping to the next (one pin serves a cluster: its
// controllers share one key).
//
// # Output
//
// Human text on stdout by default (aligned tables for lists); with -o json
// the `data` value of the controller's answer, indented, for scripts.
// `fn invoke` always prints the function's output JSON.
//
// # Errors
//
// One line on stderr ("wisp: ...") and exit code 1; a usage error (unknown
// flag or command, wrong number of arguments) exits 2. The package must never
// print a multi-line error, a stack trace or a Go-internal error string when
// a plainer one is known (an unreachable host, a refused token).
package cli
