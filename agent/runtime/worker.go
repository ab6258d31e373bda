package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"runtime/debug"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

// RunCompileWorkerIfAsked turns the calling program into a compile worker
// when its first argument is WorkerArg: it serves one compilation on
// standard input and output, then exits. The Wisp binaries call it first
// thing in main, so that CompileBudget.Worker can name them.
func RunCompileWorkerIfAsked() {
	if len(os.Args) > 1 && os.Args[1] == WorkerArg {
		os.Exit(ServeCompileWorker(os.Stdin, os.Stdout))
	}
}

// maxWorkerCode bounds the code a worker accepts, whatever it is told.
const maxWorkerCode = 256 << 20

// ServeCompileWorker reads one request (a JSON line, then the wasm bytes),
// caps this process's memory at the request's budget, compiles the module
// as the requesting runtime would (into the on-disk cache when one is
// named) and writes one JSON reply line. It returns the exit code. A module
// that exhausts the memory budget makes the Go runtime abort the process:
// the parent reads that from the exit status and the standard error.
func ServeCompileWorker(in io.Reader, out io.Writer) int {
	reply := func(r workerReply) int {
		b, _ := json.Marshal(r)
		out.Write(append(b, '\n'))
		return 0
	}
	br := bufio.NewReaderSize(in, 4096)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return reply(workerReply{Error: fmt.Sprintf("reading the request: %v", err)})
	}
	var req workerRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return reply(workerReply{Error: fmt.Sprintf("bad request: %v", err)})
	}
	if req.CodeBytes < 0 || req.CodeBytes > maxWorkerCode {
		return reply(workerReply{Error: fmt.Sprintf("code of %d bytes", req.CodeBytes)})
	}
	if req.MemoryBytes > 0 {
		if err := limitMemory(req.MemoryBytes); err != nil {
			return reply(workerReply{Error: fmt.Sprintf("limiting memory: %v", err)})
		}
		// No collection before the heap nears the budget: a compile is
		// short-lived, and a fresh heap would otherwise be collected at
		// every doubling from 4 MB up.
		debug.SetMemoryLimit(int64(req.MemoryBytes / 4 * 3))
		debug.SetGCPercent(-1)
	}
	if req.CPUSeconds > 0 {
		if err := limitCPU(req.CPUSeconds); err != nil {
			return reply(workerReply{Error: fmt.Sprintf("limiting CPU time: %v", err)})
		}
	}
	code := make([]byte, req.CodeBytes)
	if _, err := io.ReadFull(br, code); err != nil {
		return reply(workerReply{Error: fmt.Sprintf("reading the code: %v", err)})
	}
	// A worker yields the CPU to the processes that serve (its nice value
	// is raised, never lowered back) and, with the optimising compiler,
	// compiles functions on every core it may use.
	lowerPriority()
	ctx := context.Background()
	if req.Engine == EngineCompiler {
		ctx = experimental.WithCompilationWorkers(ctx, goruntime.GOMAXPROCS(0))
	}
	var cc wazero.CompilationCache
	if req.CacheDir != "" {
		if cc, err = wazero.NewCompilationCacheWithDir(req.CacheDir); err != nil {
			return reply(workerReply{Error: fmt.Sprintf("compilation cache: %v", err)})
		}
	}
	rt := wazero.NewRuntimeWithConfig(ctx, runtimeConfig(req.Engine, cc))
	prepared, err := prepareCode(code, req.Engine)
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return reply(workerReply{Kind: rerr.Kind, Msg: rerr.Msg})
		}
		return reply(workerReply{Error: err.Error()})
	}
	cm, err := rt.CompileModule(ctx, prepared)
	if err != nil {
		return reply(workerReply{Kind: KindInvalidModule, Msg: err.Error()})
	}
	info, err := describe(cm, code)
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return reply(workerReply{Kind: rerr.Kind, Msg: rerr.Msg})
		}
		return reply(workerReply{Error: err.Error()})
	}
	return reply(workerReply{Info: &info})
}

// SelfWorker is the CompileBudget.Worker command line that runs this very
// program as a compile worker, or nil when the program cannot find its own
// executable. The program must call RunCompileWorkerIfAsked first thing.
func SelfWorker() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, WorkerArg}
}
