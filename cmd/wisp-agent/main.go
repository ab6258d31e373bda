// Command wisp-agent is Wisp's edge agent.
//
//	wisp-agent invoke [flags] <file.wasm> [json-input]
//
// runs one function locally with the agent's runtime, with no controller:
// the output JSON goes to stdout, the function's log lines to stderr.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/wispfn/wisp/agent/runtime"
)

func main() {
	runtime.RunCompileWorkerIfAsked() // a compile worker started by this very binary
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
