// Package invoke is the controller's invocation vocabulary: what an
// invocation asks for ([Request]), what a successful one answers
// ([Result]), the kinds of failure ([ErrNoWorker], [ErrGuest], [ErrFailed],
// [ErrLost], [ErrQuarantined], [ErrTooLarge]) and the [Dispatcher] that runs
// one somewhere.
//
// The REST API (controller/api) and the cloud MQTT events
// (controller/events, through controller/server) build requests with
// [ForFunction]; controller/fleet implements [Dispatcher] on its agents.
// Each side speaks this package only, so the fleet never sees HTTP and the
// API never sees QUIC. The API maps the kinds to status codes in one place
// (controller/api's statusOf).
//
// # Must never
//
//   - import controller/api or controller/fleet (archtest enforces it);
//   - do I/O: it is types, constructors and one request builder.
package invoke
