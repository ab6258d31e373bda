// Command wisp-controller runs the Wisp controller: the FunLess REST API over
// a Postgres store (WISP_DATABASE_URL) or, with no DSN, an embedded bbolt
// store in the data dir.
//
// Configuration comes from defaults, then an optional YAML file (-config or
// WISP_CONFIG), then WISP_* environment variables, then flags; see config.go.
// On first start it creates the admin subject and writes its token to
// <data dir>/admin.token (mode 0600). SIGINT or SIGTERM stops it gracefully:
// it stops accepting, finishes in-flight requests within -shutdown-timeout,
// then closes the store.
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
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr)) // tests call run directly
}
