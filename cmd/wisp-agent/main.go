// Command wisp-agent is Wisp's edge agent.
//
//	wisp-agent [run] [flags]                       run the agent (the default command)
//	wisp-agent invoke [flags] <file.wasm> [json]   run one function here, no controller
//	wisp-agent status [-o json]                    links, desired set, outbox, last activations
//	wisp-agent healthcheck [--live]                exit 0 when the agent here is ready (live)
//	wisp-agent version
//
// invoke prints the output JSON on stdout and the function's log lines on
// stderr. Every setting is a flag, a WISP_* variable and a key of the YAML
// file named by --config or WISP_AGENT_CONFIG, from one table (config.go,
// internal/settings): defaults < file < environment < flags.
package main

import (
	"context"
	"github.com/wispfn/wisp/internal/profiling"
	"os"
	"os/signal"
	"syscall"

	"github.com/wispfn/wisp/agent/runtime"
)

func main() {
	runtime.RunCompileWorkerIfAsked() // a compile worker started by this very binary
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile := profiling.Start()                                            // WISP_CPU_PROFILE (benchmarks)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv) // tests call run directly
	stopProfile()
	os.Exit(code)
}
