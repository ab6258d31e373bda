package executor

import (
	"errors"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/protocol"
)

// WireCode maps an executor or runtime error to its stable wire code.
func WireCode(err error) protocol.ErrorCode {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr.Code
	}
	if errors.Is(err, ErrNoCode) {
		return protocol.UnknownDigest
	}
	if errors.Is(err, state.ErrQuarantined) {
		return protocol.Quarantined
	}
	switch runtime.KindOf(err) {
	case runtime.KindNotWasm:
		return protocol.NotWasm
	case runtime.KindModuleLimit:
		return protocol.ModuleLimit
	case runtime.KindCompileBudget:
		return protocol.CompileBudget
	case runtime.KindInvalidModule:
		return protocol.InvalidModule
	case runtime.KindUnknownImport:
		return protocol.UnknownImport
	case runtime.KindMissingExport:
		return protocol.MissingExport
	case runtime.KindTrap:
		return protocol.Trap
	case runtime.KindTimeout:
		return protocol.Timeout
	case runtime.KindCanceled:
		return protocol.Canceled
	case runtime.KindMemoryLimit:
		return protocol.MemoryLimit
	case runtime.KindInputTooLarge:
		return protocol.InputTooLarge
	case runtime.KindInvalidInput:
		return protocol.InvalidInput
	case runtime.KindOutputNotJSON:
		return protocol.OutputNotJSON
	case runtime.KindOutputTooLarge:
		return protocol.OutputTooLarge
	case runtime.KindGuestError:
		return protocol.GuestError
	case runtime.KindExit:
		return protocol.Exit
	case runtime.KindClosed:
		return protocol.Draining
	case runtime.KindOverloaded:
		return protocol.Overloaded
	}
	return protocol.Internal
}
