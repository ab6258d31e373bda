package invoke

import "errors"

// The kinds of failure of an invocation. Dispatchers build them with the
// constructors below (or wrap ErrNoWorker); callers test them with
// errors.Is and show [Error.Detail].
var (
	// ErrNoWorker: no agent can run the invocation, and nothing ran.
	ErrNoWorker = errors.New("No worker available")
	// ErrGuest: the function itself answered with an error (GuestError).
	ErrGuest = errors.New("function error")
	// ErrFailed: the invocation failed for a reason that is not the
	// function's answer: a trap, a timeout (Failed).
	ErrFailed = errors.New("invocation failed")
	// ErrLost: the agent running the invocation was lost after the
	// invocation reached it, so the function may have run; it is not run
	// again (Lost).
	ErrLost = errors.New("invocation lost")
	// ErrQuarantined: the function's code is quarantined (it was running
	// when an agent died) or held while such a crash is being confirmed;
	// nothing ran, and retrying does not help until an operator releases
	// it or the hold ends (Quarantined).
	ErrQuarantined = errors.New("quarantined")
	// ErrTooLarge: the request is over a limit of the agent's, the input
	// limit (TooLarge).
	ErrTooLarge = errors.New("too large")
)

// Error is a failed invocation: its kind (one of the sentinels above), the
// detail a caller may be shown, and a cause for the log only.
type Error struct {
	Kind   error
	Detail string
	Cause  error
	// Activation is the id of the failed invocation's activation record,
	// when one was recorded (the function ran and failed); "" otherwise.
	Activation string
}

// ActivationOf returns the activation id err carries (an *Error's
// Activation), or "".
func ActivationOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Activation
	}
	return ""
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Detail + ": " + e.Cause.Error()
	}
	return e.Detail
}

func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// GuestError is the function's own error message; its detail is
// "Error: <message>" (FunLess's).
func GuestError(message string) error {
	return &Error{Kind: ErrGuest, Detail: "Error: " + message}
}

// Failed is a call that failed without an answer from the function (trap,
// timeout): detail must be useful to the caller and free of internals.
func Failed(detail string, cause error) error {
	return &Error{Kind: ErrFailed, Detail: detail, Cause: cause}
}

// Lost is a call whose agent was lost after the invocation reached it:
// detail must say that the function may have run.
func Lost(detail string, cause error) error {
	return &Error{Kind: ErrLost, Detail: detail, Cause: cause}
}

// Quarantined is code the dispatcher refuses to run: detail must say why
// and what ends it.
func Quarantined(detail string) error {
	return &Error{Kind: ErrQuarantined, Detail: detail}
}

// TooLarge is a request over an agent's limit (the input limit).
func TooLarge(detail string) error {
	return &Error{Kind: ErrTooLarge, Detail: detail}
}
