package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// ABI is how Wisp talks to a module.
type ABI string

const (
	// ABIFunLess is FunLess's ABI v1: exports memory and __invoke, imports fl_imps.
	ABIFunLess ABI = "funless-v1"
	// ABIWASICommand is a plain WASI command: JSON on stdin, JSON on stdout.
	ABIWASICommand ABI = "wasi-command"
)

// Info describes a module, as found by Inspect or Load.
type Info struct {
	// Digest is "sha256:<hex>" of the module bytes.
	Digest string
	Size   int
	ABI    ABI
	// Imports lists "module.name" of every imported function, sorted.
	Imports []string
	// MemoryMinBytes is the linear memory the module needs at start.
	MemoryMinBytes uint64
	// Initialize is true when the module exports _initialize (a WASI reactor,
	// such as a Go -buildmode=c-shared or clang -mexec-model=reactor build).
	Initialize bool
	// TableBytes is the host memory the module's tables can take (see
	// Profile); it counts against an invocation's memory cap.
	TableBytes uint64

	// Compiled and DiskCacheHit describe the Load call that returned this
	// Info: it compiled the module (rather than finding it in memory), and
	// the compiled code came from the on-disk cache.
	Compiled, DiskCacheHit bool
}

const (
	flModule   = "fl_imps"
	wasiModule = wasi_snapshot_preview1.ModuleName
	pageSize   = 1 << 16
)

var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// flImports are the FunLess host functions and their parameter counts (all
// i32, no results).
var flImports = map[string]int{
	"__get_input_data":  1,
	"__insert_response": 2,
	"__insert_error":    2,
	"__console_log":     2,
	"__http_request":    10,
}

// Digest returns the code digest Wisp uses everywhere: "sha256:<hex>".
func Digest(code []byte) string {
	sum := sha256.Sum256(code)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// wasiFuncs is the set of WASI preview1 functions wazero provides.
var wasiFuncs = sync.OnceValue(func() map[string]bool {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	m := r.Module(wasiModule)
	names := map[string]bool{}
	for name := range m.ExportedFunctionDefinitions() {
		names[name] = true
	}
	return names
})

// InspectConfig configures an Inspector. The zero value is valid.
type InspectConfig struct {
	// Limits are the static limits uploads must fit (zero fields:
	// DefaultModuleLimits).
	Limits ModuleLimits
	// Compile bounds validation; it compiles with the interpreter, which
	// validates exactly what the compiler does (zero fields: defaults).
	Compile CompileBudget
	// MemoryBytes is the memory cap invocations run under; a module whose
	// tables alone can take more is refused. Default DefaultLimits.MemoryBytes.
	MemoryBytes uint64
}

// Inspector validates uploads with the rules every Runtime applies on Load.
// Safe for concurrent use.
type Inspector struct {
	c      *compiler
	memory uint64
	rt     func() wazero.Runtime
}

// NewInspector returns an Inspector; it does no I/O.
func NewInspector(cfg InspectConfig) *Inspector {
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = DefaultLimits.MemoryBytes
	}
	return &Inspector{
		c:      newCompiler(cfg.Limits, cfg.Compile, EngineInterpreter),
		memory: cfg.MemoryBytes,
		rt: sync.OnceValue(func() wazero.Runtime {
			return wazero.NewRuntimeWithConfig(context.Background(), runtimeConfig(EngineInterpreter, nil))
		}),
	}
}

var defaultInspector = sync.OnceValue(func() *Inspector { return NewInspector(InspectConfig{}) })

// Inspect is Inspector.Inspect with a zero InspectConfig: default limits,
// every compilation in this process.
func Inspect(ctx context.Context, code []byte) (Info, error) {
	return defaultInspector().Inspect(ctx, code)
}

// Inspect validates code with the same rules Load applies, without keeping
// anything: the controller calls it on upload so that what it accepts every
// agent can run.
//
// # Errors
//
// ErrNotWasm, ErrModuleLimit (naming the limit), ErrInvalidModule (with
// wazero's reason), ErrUnknownImport (naming the import), ErrMissingExport,
// ErrCompileBudget; ErrCanceled or ErrTimeout when ctx ends first.
func (i *Inspector) Inspect(ctx context.Context, code []byte) (Info, error) {
	if err := checkMagic(code); err != nil {
		return Info{}, err
	}
	digest := Digest(code)
	prof, err := i.c.check(digest, code)
	if err != nil {
		return Info{}, err
	}
	if prof.TableBytes > i.memory {
		return Info{}, newError(KindModuleLimit, "the module's tables can take %d bytes, over the memory cap of %d bytes", prof.TableBytes, i.memory)
	}
	var info Info
	if i.c.isolated(prof) {
		info, err = i.c.inWorker(ctx, digest, code, "")
	} else {
		info, err = i.local(ctx, code, prof)
	}
	if err != nil {
		return Info{}, err
	}
	info.TableBytes = prof.TableBytes
	return info, nil
}

func (i *Inspector) local(ctx context.Context, code []byte, prof Profile) (Info, error) {
	release, err := i.c.inProcess(ctx, prof)
	if err != nil {
		return Info{}, err
	}
	defer release()
	cm, err := i.rt().CompileModule(ctx, code)
	if err != nil {
		return Info{}, &Error{Kind: KindInvalidModule, Msg: err.Error(), Err: err}
	}
	defer cm.Close(ctx)
	return describe(cm, code)
}

func checkMagic(code []byte) error {
	if !bytes.HasPrefix(code, wasmMagic) {
		return newError(KindNotWasm, "the code does not start with the wasm magic bytes \\0asm")
	}
	return nil
}

// describe detects the ABI and checks every import and export.
func describe(cm wazero.CompiledModule, code []byte) (Info, error) {
	info := Info{Digest: Digest(code), Size: len(code)}
	for _, fn := range cm.ImportedFunctions() {
		mod, name, _ := fn.Import()
		full := mod + "." + name
		info.Imports = append(info.Imports, full)
		switch mod {
		case flModule:
			n, ok := flImports[name]
			if !ok {
				return info, newError(KindUnknownImport, "%s: fl_imps provides only __get_input_data, __insert_response, __insert_error, __console_log and __http_request", full)
			}
			if !allI32(fn.ParamTypes(), n) || len(fn.ResultTypes()) != 0 {
				return info, newError(KindInvalidModule, "%s: wrong signature, want %d i32 params and no result", full, n)
			}
		case wasiModule:
			if !wasiFuncs()[name] {
				return info, newError(KindUnknownImport, "%s: not a WASI preview1 function", full)
			}
		default:
			return info, newError(KindUnknownImport, "%s: only fl_imps and wasi_snapshot_preview1 are provided", full)
		}
	}
	sort.Strings(info.Imports)
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		return info, newError(KindUnknownImport, "%s.%s: memory imports are not provided", mod, name)
	}

	exports := cm.ExportedFunctions()
	if inv, ok := exports["__invoke"]; ok {
		if !allI32(inv.ParamTypes(), 1) || !allI32(inv.ResultTypes(), 1) {
			return info, newError(KindInvalidModule, "__invoke has the wrong signature, want (i32) -> i32")
		}
		info.ABI = ABIFunLess
	} else if start, ok := exports["_start"]; ok {
		if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
			return info, newError(KindInvalidModule, "_start has the wrong signature, want () -> ()")
		}
		info.ABI = ABIWASICommand
	} else {
		return info, newError(KindMissingExport, "the module exports neither __invoke (FunLess ABI) nor _start (WASI command)")
	}
	if init, ok := exports["_initialize"]; ok && len(init.ParamTypes()) == 0 && len(init.ResultTypes()) == 0 {
		info.Initialize = true
	}
	mem, ok := cm.ExportedMemories()["memory"]
	if !ok {
		if info.ABI == ABIFunLess {
			return info, newError(KindMissingExport, "the module does not export its linear memory as \"memory\"")
		}
	} else {
		info.MemoryMinBytes = uint64(mem.Min()) * pageSize
	}
	return info, nil
}

func allI32(ts []api.ValueType, n int) bool {
	if len(ts) != n {
		return false
	}
	for _, t := range ts {
		if t != api.ValueTypeI32 {
			return false
		}
	}
	return true
}

// String names the ABI for humans.
func (a ABI) String() string { return string(a) }

// ParseABI is the inverse of String.
func ParseABI(s string) (ABI, error) {
	switch ABI(strings.ToLower(s)) {
	case ABIFunLess:
		return ABIFunLess, nil
	case ABIWASICommand:
		return ABIWASICommand, nil
	}
	return "", fmt.Errorf("unknown ABI %q", s)
}
