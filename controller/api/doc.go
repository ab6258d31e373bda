// Package api is the controller's REST API: FunLess's routes, bodies,
// envelopes and status codes (see FUNLESS.md and openapi/openapi.yaml) on
// fiber v2.
//
// Success bodies are {"data": ...}; every error is {"errors":{"detail":"..."}}
// and goes through one function, statusOf in errors.go, which maps store,
// auth, runtime and invoker errors to status codes. Handlers return errors;
// they never write error responses themselves.
//
// A subject sees and changes only its own modules, their functions and
// activations, and its APP scripts; anything else answers as if it did not
// exist (owners.go). The admin sees everything.
//
// Uploaded code is validated with an agent/runtime.Inspector, the loader
// agents use, so that what the controller accepts every agent can run: the
// static module limits first (a refusal is 400 naming the limit), then a
// compilation under a time and memory budget, in a worker process for any
// module that is not cheap to compile by construction. Events, sinks
// and metadata are validated, normalised and persisted with the function;
// connecting them is not this package's job. Invocations go through an
// invoke.Dispatcher (Config.Invoker) once their args are within the input
// limit (413 otherwise); without one, every invocation of an existing function answers
// 503 "No worker available", as FunLess does with no workers. Wisp's
// statuses beside FunLess's: 413 (args over the input limit), 423 (the
// code is quarantined or held), 502 (the agent was lost after the call
// reached it); docs/delivery.md says which calls may have run. The admin
// lists and releases quarantined code under /v1/admin/quarantine.
//
// # Must never
//
//   - answer 503 for a call that may have run: the dispatcher says so with
//     invoke.Lost (502);
//   - show a token except once, in the response that created it;
//   - leak internal errors (SQL, file paths, stacks) to clients: 500s say
//     "internal error" and the cause goes to the log;
//   - touch the store before a request is fully validated, so a bad request
//     changes nothing.
package api
