package protocol

import (
	"errors"
	"strconv"
)

// Errors of this package's own decoding and framing.
var (
	// ErrMalformed is matched by every decoding error of a known message: a
	// truncated field, a bad varint, a value of the wrong shape.
	ErrMalformed = errors.New("protocol: malformed message")

	// ErrFrameTooLarge is matched by [*FrameTooLargeError].
	ErrFrameTooLarge = errors.New("protocol: frame too large")

	// ErrUnknownType is matched by the error for a frame type the receiver
	// does not know and may not ignore (see [FrameType.Optional]).
	ErrUnknownType = errors.New("protocol: unknown frame type")
)

// ErrorCode is a stable numeric error code carried by Error and Result
// messages. Codes are never renumbered or reused: 0 is OK, 1–99 general,
// 100–199 function failures, 200 and up reserved.
type ErrorCode uint16

// General codes.
const (
	OK                 ErrorCode = 0
	BadRequest         ErrorCode = 1 // the request is malformed or out of place
	Unauthorized       ErrorCode = 2 // bad join secret or credential
	UnsupportedVersion ErrorCode = 3 // the peer's protocol_version is not spoken here
	Internal           ErrorCode = 4 // a bug or an unexpected failure on the answering side
	Overloaded         ErrorCode = 5 // no capacity now; try elsewhere or later
	Draining           ErrorCode = 6 // shutting down; accepts no new work
	UnknownDigest      ErrorCode = 7 // no code with that digest is held
)

// Function failures, mirroring the agent runtime's kinds. An invocation that
// ends with one of them ran (or tried to run) the user's code: retrying it
// elsewhere does not help.
const (
	NotWasm        ErrorCode = 100 // the code does not start with the wasm magic
	InvalidModule  ErrorCode = 101 // decoding, validation or compilation failed
	UnknownImport  ErrorCode = 102 // the module imports something Wisp does not provide
	MissingExport  ErrorCode = 103 // no entry point or no memory
	Trap           ErrorCode = 104 // the guest trapped
	Timeout        ErrorCode = 105 // the deadline or timeout passed; the guest was stopped
	Canceled       ErrorCode = 106 // the caller gave up; the guest was stopped
	MemoryLimit    ErrorCode = 107 // the guest wanted more memory than its limit
	InputTooLarge  ErrorCode = 108 // the arguments exceed the input limit
	InvalidInput   ErrorCode = 109 // the arguments are not JSON
	OutputNotJSON  ErrorCode = 110 // the output is not a JSON document
	OutputTooLarge ErrorCode = 111 // the output exceeds the output limit
	GuestError     ErrorCode = 112 // the function reported an error
	Exit           ErrorCode = 113 // a WASI command exited non-zero
	ModuleLimit    ErrorCode = 114 // the module exceeds a static limit of the agent
	CompileBudget  ErrorCode = 115 // compiling the module exceeded the agent's time or memory budget

	// Quarantined: the code was running when an agent died, so no agent
	// runs it until an operator releases it. Nothing ran. Since version 2.
	Quarantined ErrorCode = 116
)

var codeNames = map[ErrorCode]string{
	OK:                 "ok",
	BadRequest:         "bad request",
	Unauthorized:       "unauthorized",
	UnsupportedVersion: "unsupported version",
	Internal:           "internal error",
	Overloaded:         "overloaded",
	Draining:           "draining",
	UnknownDigest:      "unknown digest",
	NotWasm:            "not wasm",
	InvalidModule:      "invalid module",
	UnknownImport:      "unknown import",
	MissingExport:      "missing export",
	Trap:               "trap",
	Timeout:            "timeout",
	Canceled:           "canceled",
	MemoryLimit:        "memory limit",
	InputTooLarge:      "input too large",
	InvalidInput:       "invalid input",
	OutputNotJSON:      "output not json",
	OutputTooLarge:     "output too large",
	GuestError:         "guest error",
	Exit:               "exit",
	ModuleLimit:        "module limit",
	CompileBudget:      "compile budget",
	Quarantined:        "quarantined",
}

func (c ErrorCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return "error code " + strconv.Itoa(int(c))
}

// IsFunctionError reports whether c is a function failure (100–199): the
// user's code, not the platform, is at fault.
func IsFunctionError(c ErrorCode) bool { return c >= 100 && c <= 199 }

// NotStarted reports whether a Result with code c says that the agent
// refused the invocation before running any of it ([Overloaded],
// [Draining]): the one case, besides an Invoke that never left, in which a
// controller may run a synchronous invocation on another agent. An agent
// sends these codes only when it ran nothing (see "Delivery" in the package
// doc).
func NotStarted(c ErrorCode) bool { return c == Overloaded || c == Draining }

// Error is both the Error message (frame type 0x08) and a Go error carrying
// an [ErrorCode]. errors.Is matches two *Error values by code alone:
//
//	if errors.Is(err, protocol.ErrUnauthorized) { ... }
type Error struct {
	Code    ErrorCode // 1
	Message string    // 2
}

// Sentinels for the general codes, for errors.Is.
var (
	ErrBadRequest         = &Error{Code: BadRequest}
	ErrUnauthorized       = &Error{Code: Unauthorized}
	ErrUnsupportedVersion = &Error{Code: UnsupportedVersion}
	ErrInternal           = &Error{Code: Internal}
	ErrOverloaded         = &Error{Code: Overloaded}
	ErrDraining           = &Error{Code: Draining}
	ErrUnknownDigest      = &Error{Code: UnknownDigest}
)

func (e *Error) Error() string {
	if e.Message == "" {
		return "wisp: " + e.Code.String()
	}
	return "wisp: " + e.Code.String() + ": " + e.Message
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func (*Error) Type() FrameType { return TypeError }

func (e *Error) Append(dst []byte) []byte {
	enc := encoder{dst}
	enc.uint(1, uint64(e.Code))
	enc.string(2, e.Message)
	return enc.buf
}

func (e *Error) AppendBinary(dst []byte) ([]byte, error) { return e.Append(dst), nil }
func (e *Error) MarshalBinary() ([]byte, error)          { return e.Append(nil), nil }
func (e *Error) UnmarshalBinary(p []byte) error          { return unmarshal(e, p) }

func (e *Error) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			e.Code = ErrorCode(d.uint(16))
		case 2:
			e.Message = d.string()
		}
	}
	return d.err
}

// CloseCode is a QUIC application error code for closing a connection
// (quic-go: conn.CloseWithError(quic.ApplicationErrorCode(code), reason)).
type CloseCode uint64

const (
	CloseNoError           CloseCode = 0 // normal close
	CloseShutdown          CloseCode = 1 // the closing side is shutting down (after draining)
	CloseRefused           CloseCode = 2 // authentication failed
	CloseProtocolViolation CloseCode = 3 // the peer sent something it must not
	CloseSuperseded        CloseCode = 4 // the agent connected again; this connection is stale
)

func (c CloseCode) String() string {
	switch c {
	case CloseNoError:
		return "no error"
	case CloseShutdown:
		return "shutdown"
	case CloseRefused:
		return "refused"
	case CloseProtocolViolation:
		return "protocol violation"
	case CloseSuperseded:
		return "superseded"
	}
	return "close code " + strconv.FormatUint(uint64(c), 10)
}
