package runtime

import (
	"errors"
	"fmt"
)

// Kind classifies a runtime failure. Kinds are stable: protocol/ maps them to
// wire codes and the REST layer to status codes, so never renumber them.
type Kind uint16

const (
	KindUnknown        Kind = iota
	KindNotWasm             // the bytes do not start with the wasm magic
	KindInvalidModule       // decoding, validation or compilation failed
	KindUnknownImport       // the module imports something Wisp does not provide
	KindMissingExport       // neither __invoke nor _start, or no memory
	KindTrap                // the guest trapped (unreachable, out of bounds, bad host pointer...)
	KindTimeout             // the deadline passed; the guest was stopped
	KindCanceled            // the caller gave up; the guest was stopped
	KindMemoryLimit         // the guest wanted more linear memory than its cap
	KindInputTooLarge       // the input exceeds the input limit
	KindInvalidInput        // the input is not JSON
	KindOutputNotJSON       // the output is not a JSON document
	KindOutputTooLarge      // the output exceeds the output limit
	KindGuestError          // the function reported an error (FunLess: 422)
	KindExit                // a WASI command exited non-zero
	KindNotLoaded           // no module with that digest is loaded
	KindClosed              // the runtime is closed
	KindModuleLimit         // the module exceeds a static limit (ModuleLimits)
	KindCompileBudget       // compiling the module exceeded its time or memory budget
	KindOverloaded          // the function's queue on this agent is full; nothing ran
)

var kindNames = [...]string{
	KindUnknown:        "unknown",
	KindNotWasm:        "not wasm",
	KindInvalidModule:  "invalid module",
	KindUnknownImport:  "unknown import",
	KindMissingExport:  "missing export",
	KindTrap:           "trap",
	KindTimeout:        "timeout",
	KindCanceled:       "canceled",
	KindMemoryLimit:    "memory limit",
	KindInputTooLarge:  "input too large",
	KindInvalidInput:   "invalid input",
	KindOutputNotJSON:  "output not json",
	KindOutputTooLarge: "output too large",
	KindGuestError:     "guest error",
	KindExit:           "exit",
	KindNotLoaded:      "not loaded",
	KindClosed:         "closed",
	KindModuleLimit:    "module limit",
	KindCompileBudget:  "compile budget",
	KindOverloaded:     "overloaded",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is every error the runtime returns about a module or an invocation.
//
// Match a kind with errors.Is against the sentinels below, or read the
// details with errors.As:
//
//	var rerr *runtime.Error
//	if errors.As(err, &rerr) && rerr.Kind == runtime.KindExit { ... rerr.ExitCode, rerr.Stderr ... }
type Error struct {
	Kind Kind
	// Msg is the human explanation (the guest's own message for KindGuestError).
	Msg string
	// ExitCode is the WASI exit code (KindExit).
	ExitCode uint32
	// Stderr is what a WASI command wrote to stderr (KindExit, KindTrap), bounded.
	Stderr string
	// Err is the underlying error, when there is one (wazero's, for traps).
	Err error
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Kind.String()
	}
	return e.Kind.String() + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrTimeout) match any *Error of that kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Err == nil && t.Kind == e.Kind
}

// Sentinels, one per kind, for errors.Is.
var (
	ErrNotWasm        = &Error{Kind: KindNotWasm}
	ErrInvalidModule  = &Error{Kind: KindInvalidModule}
	ErrUnknownImport  = &Error{Kind: KindUnknownImport}
	ErrMissingExport  = &Error{Kind: KindMissingExport}
	ErrTrap           = &Error{Kind: KindTrap}
	ErrTimeout        = &Error{Kind: KindTimeout}
	ErrCanceled       = &Error{Kind: KindCanceled}
	ErrMemoryLimit    = &Error{Kind: KindMemoryLimit}
	ErrInputTooLarge  = &Error{Kind: KindInputTooLarge}
	ErrInvalidInput   = &Error{Kind: KindInvalidInput}
	ErrOutputNotJSON  = &Error{Kind: KindOutputNotJSON}
	ErrOutputTooLarge = &Error{Kind: KindOutputTooLarge}
	ErrGuestError     = &Error{Kind: KindGuestError}
	ErrExit           = &Error{Kind: KindExit}
	ErrNotLoaded      = &Error{Kind: KindNotLoaded}
	ErrClosed         = &Error{Kind: KindClosed}
	ErrModuleLimit    = &Error{Kind: KindModuleLimit}
	ErrCompileBudget  = &Error{Kind: KindCompileBudget}
	ErrOverloaded     = &Error{Kind: KindOverloaded}
)

func newError(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of err, or KindUnknown when err is not a runtime error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnknown
}
