// Command wisp-controller runs the Wisp controller: the FunLess REST API over
// a Postgres store (--database-url) or, with no DSN, an embedded bbolt
// store in the data dir, and the QUIC listener agents dial.
//
//	wisp-controller [run] [flags]     run the controller (the default command)
//	wisp-controller token create      make a join token for agents
//	wisp-controller compact           shrink the embedded store (controller stopped)
//	wisp-controller admin-token rotate  give the admin a new token
//	wisp-controller tls fingerprint   print the REST certificate key fingerprint
//	wisp-controller healthcheck       exit 0 when the controller here is ready (--live: live)
//	wisp-controller version
//
// Every setting is a flag, a WISP_* variable and a key of the YAML file
// named by --config or WISP_CONTROLLER_CONFIG, from one table
// (config.go, internal/settings): defaults < file < environment < flags.
// On first start it creates the admin subject and writes its token to
// <data dir>/admin.token (mode 0600). SIGINT or SIGTERM stops it gracefully:
// it stops accepting, finishes in-flight requests within --shutdown-timeout,
// then closes the store.
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
	stopProfile := profiling.Start() // WISP_CPU_PROFILE (benchmarks)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	os.Exit(code) // tests call run directly
}
