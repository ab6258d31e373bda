// Package activation runs a function of the agent's desired set and records
// the activation in the agent's durable outbox: the one step that every
// local activation takes, whether it comes from the local invoke API
// (agent/localapi) or from an edge-local MQTT trigger (agent/triggers).
// Activations the controller dispatches are not recorded here (the
// controller records those itself).
//
// A function runs with the configuration its desired-set entry carries:
// its environment (state.DesiredEnv: its env, then its secrets' values, the
// one place the edge assembles it) and its
// egress allowlist (the function's own or the controller's default, as the
// controller resolved it), so a partitioned agent, restarted or not, runs
// it as the controller last configured it.
//
// # Contract
//
//   - A run that returns a nil error is recorded: its outbox entry is on
//     disk before Run returns (fsync'd; see Request.Unsynced for the one
//     exception, open to API calls only), so the controller and the
//     function's sinks get it exactly once when the link is back. The
//     function's own failure (a guest error, a trap, a timeout, its code
//     quarantined) is a recorded result, in Result.Err, not an error of Run.
//   - A run that returns an error is not recorded, and nothing of it ran
//     unless the error is ErrNotRecorded: ErrUnknownFunction (not in the
//     desired set), ErrNoCode (the code is not on the agent), ErrOverloaded
//     (the function's queue is full), ErrClosed (the agent is stopping: a
//     message that arrives then is left for the next start). A trigger leaves its message
//     unacknowledged on any of them so the broker delivers it again.
//   - RunMessage is Run for a message a broker may deliver again. Its key
//     (MessageKey) is stored in the same journal frame as the outbox entry;
//     a redelivered message whose key is already stored is not run again
//     (Result.Duplicate), which makes a crash between the append and the
//     broker's acknowledgement exactly-once.
//
// It decides no HTTP status codes and knows nothing of MQTT sessions: the
// callers map its errors and results to their own terms. It must never
// import controller code.
package activation
