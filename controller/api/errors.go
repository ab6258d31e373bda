package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/store"
)

// Sentinels the handlers and the Invoker return; statusOf maps them.
var (
	// ErrBadRequest: malformed JSON, multipart, or field (400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: missing or unknown bearer token (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTooManyRequests: the client failed to authenticate too often
	// (429 with Retry-After).
	ErrTooManyRequests = errors.New("too many requests")
	// ErrForbidden: the subject is not allowed (403).
	ErrForbidden = errors.New("forbidden")
	// ErrInvalidName: a module, function, subject or script name breaks the
	// naming rule (422).
	ErrInvalidName = errors.New("invalid name")
	// ErrTooLarge: the upload is over the limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrNoWorker: no agent can run the invocation (503 "No worker available").
	ErrNoWorker = errors.New("No worker available")
	// ErrBusy: the controller cannot do the work now, for reasons that
	// are not the request's (503 with Retry-After); retrying later helps.
	ErrBusy = errors.New("busy")
	// ErrGuest: the function itself reported an error (422 "Error: <message>").
	// Invokers build it with GuestError.
	ErrGuest = errors.New("function error")
	// ErrInvocation: the invocation failed for a reason that is not the
	// function's answer: a trap, a timeout (500). Invokers build it with
	// InvocationError.
	ErrInvocation = errors.New("invocation failed")
	// ErrInvocationLost: the agent running the invocation was lost after
	// the invocation reached it, so the function may have run; it is not
	// run again (502). Invokers build it with InvocationLost.
	ErrInvocationLost = errors.New("invocation lost")
	// ErrQuarantined: the function's code is quarantined (it was running
	// when an agent died) or held while such a crash is being confirmed;
	// nothing ran, and retrying does not help until an operator releases
	// it or the hold ends (423). Invokers build it with Quarantined.
	ErrQuarantined = errors.New("quarantined")
)

// problem is an error with the detail a client sees. Its kind (a sentinel)
// picks the status; cause, when set, is for the log only.
type problem struct {
	kind   error
	detail string
	cause  error
}

func (p *problem) Error() string {
	if p.cause != nil {
		return p.detail + ": " + p.cause.Error()
	}
	return p.detail
}

func (p *problem) Unwrap() []error {
	if p.cause != nil {
		return []error{p.kind, p.cause}
	}
	return []error{p.kind}
}

// fail returns an error of kind whose client-visible detail is the
// formatted message.
func fail(kind error, format string, args ...any) error {
	return &problem{kind: kind, detail: fmt.Sprintf(format, args...)}
}

// failCause is fail with a cause kept for the log.
func failCause(kind, cause error, format string, args ...any) error {
	return &problem{kind: kind, detail: fmt.Sprintf(format, args...), cause: cause}
}

// GuestError is what an Invoker returns when the function answered with an
// error message: 422 {"errors":{"detail":"Error: <message>"}}.
func GuestError(message string) error {
	return &problem{kind: ErrGuest, detail: "Error: " + message}
}

// InvocationError is what an Invoker returns when a call failed without an
// answer from the function (trap, timeout, agent lost): 500 with detail,
// which must be useful to the caller and free of internals.
func InvocationError(detail string, cause error) error {
	return &problem{kind: ErrInvocation, detail: detail, cause: cause}
}

// InvocationLost is what an Invoker returns when the agent was lost after
// the invocation reached it: 502 with detail, which must say that the
// function may have run.
func InvocationLost(detail string, cause error) error {
	return &problem{kind: ErrInvocationLost, detail: detail, cause: cause}
}

// Quarantined is what an Invoker returns for code it refuses to run: 423
// with detail, which must say why and what ends it.
func Quarantined(detail string) error {
	return &problem{kind: ErrQuarantined, detail: detail}
}

// TooLarge is what an Invoker returns when the request is over a limit of
// the agent's (the input limit): 413 with detail.
func TooLarge(detail string) error {
	return &problem{kind: ErrTooLarge, detail: detail}
}

// statusOf is the one place that maps errors to HTTP status codes and the
// detail text clients see.
func statusOf(err error) (int, string) {
	var p *problem
	detail := ""
	if errors.As(err, &p) {
		detail = p.detail
	}
	var fe *fiber.Error
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, store.ErrDefaultModule):
		code = http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized), errors.Is(err, auth.ErrBadToken):
		code = http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, ErrTooManyRequests):
		code = http.StatusTooManyRequests
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrExists):
		code = http.StatusConflict
	case errors.Is(err, ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalidName), errors.Is(err, ErrGuest):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, ErrQuarantined):
		code = http.StatusLocked
	case errors.Is(err, ErrNoWorker), errors.Is(err, ErrBusy):
		code = http.StatusServiceUnavailable
	case errors.Is(err, ErrInvocationLost):
		code = http.StatusBadGateway
	case errors.Is(err, ErrInvocation):
		code = http.StatusInternalServerError
	case errors.As(err, &fe):
		// fiber's own: unknown route, wrong method, body over BodyLimit...
		code = fe.Code
		if detail == "" {
			detail = fe.Message
		}
		if code == http.StatusRequestEntityTooLarge {
			detail = "Request body too large"
		}
	}
	if detail == "" {
		switch code {
		case http.StatusInternalServerError:
			detail = "Internal server error"
		case http.StatusServiceUnavailable:
			detail = ErrNoWorker.Error()
		case http.StatusUnauthorized:
			detail = "Missing or invalid token"
		default:
			detail = http.StatusText(code)
		}
	}
	return code, detail
}

// envelope types, shared with the tests.
type (
	errorBody struct {
		Errors errorDetail `json:"errors"`
	}
	errorDetail struct {
		Detail string `json:"detail"`
	}
	dataBody[T any] struct {
		Data T `json:"data"`
	}
)
