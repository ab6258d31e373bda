package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
)

// Sentinels the handlers return; statusOf maps them and the kinds of
// controller/invoke.
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
	// ErrBusy: the controller cannot do the work now, for reasons that
	// are not the request's (503 with Retry-After); retrying later helps.
	ErrBusy = errors.New("busy")
	// ErrConflict: the request conflicts with the state (409): a secret
	// still in use, a module whose secrets bind its name.
	ErrConflict = errors.New("conflict")
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

// statusOf is the one place that maps errors to HTTP status codes and the
// detail text clients see.
func statusOf(err error) (int, string) {
	var p *problem
	var ie *invoke.Error
	detail := ""
	switch {
	case errors.As(err, &p):
		detail = p.detail
	case errors.As(err, &ie):
		detail = ie.Detail
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
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrOwner), errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrTooLarge), errors.Is(err, invoke.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalidName), errors.Is(err, invoke.ErrGuest):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, invoke.ErrQuarantined):
		code = http.StatusLocked
	case errors.Is(err, invoke.ErrNoWorker), errors.Is(err, ErrBusy):
		code = http.StatusServiceUnavailable
	case errors.Is(err, invoke.ErrLost):
		code = http.StatusBadGateway
	case errors.Is(err, invoke.ErrFailed):
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
			detail = invoke.ErrNoWorker.Error()
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
