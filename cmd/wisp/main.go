// Command wisp is Wisp's command line: functions, modules, APP scripts,
// users, agents, activations and join tokens on a controller, and new
// function projects from templates. `wisp --help` lists the commands; the
// work is done by internal/cli.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/cli"
)

func main() {
	runtime.RunCompileWorkerIfAsked() // a compile worker started by this very binary
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return cli.Run(ctx, args, stdin, stdout, stderr, getenv)
}
