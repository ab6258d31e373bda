package scheduler

import "errors"

// ErrNoWorker: no connected agent may run the function (none connected, none
// with room, or an APP script's blocks all invalid with followup fail). The
// REST edge answers it with 503, as FunLess does. Pick wraps it with the tag
// that failed; the caller adds the script's name.
//
// ErrInvalidScript, the parser's sentinel, is declared in app.go.
var ErrNoWorker = errors.New("no worker available")
