package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/internal/version"
)

// run is main without the process: exit code instead of os.Exit.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, deps{getenv: os.Getenv, stdout: stdout, stderr: stderr})
}

// deps is what run takes from the process, so tests can supply their own.
type deps struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	// ready, when set, is called with the REST listener's address once the
	// controller is about to serve.
	ready func(addr net.Addr)
}

// runWith dispatches to a command: serve (no command word), "token
// create" or "compact".
func runWith(ctx context.Context, args []string, d deps) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(d.stdout, "wisp-controller", version.Version)
		return 0
	}
	if len(args) >= 1 && args[0] == "token" {
		return runToken(ctx, args[1:], d)
	}
	if len(args) >= 1 && args[0] == "compact" {
		return runCompact(ctx, args[1:], d)
	}
	cfg, err := loadConfig(args, d.getenv, d.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n", err)
		return 2
	}
	log := newLogger(cfg, d.stderr)
	var ready func(rest, quic net.Addr)
	if d.ready != nil {
		ready = func(rest, _ net.Addr) { d.ready(rest) }
	}
	if err := server.Run(ctx, cfg.server(), log, ready); err != nil {
		log.Error("controller stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // checked by Validate
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serverConfig is the part of the configuration server.Run takes.
func (c config) server() server.Config {
	limits, _ := runtime.ParseModuleLimits(c.ModuleLimits) // checked by Validate
	hold := c.CrashHold
	if hold == 0 {
		hold = -1 // off
	}
	return server.Config{
		Listen: c.Listen, QUICListen: c.QUICListen, DataDir: c.DataDir, DatabaseURL: c.DatabaseURL,
		MaxUploadBytes: c.MaxUploadBytes, ShutdownTimeout: c.ShutdownTimeout, InvokeTimeout: c.InvokeTimeout,
		ModuleLimits: limits, Compile: runtime.CompileBudget{
			Timeout: c.CompileTimeout, MemoryBytes: uint64(c.CompileMemory), Concurrent: c.CompileWorkers,
			Worker: runtime.SelfWorker(),
		},
		ActivationBounds: activations.Bounds{
			OutputBytes: int(c.ActivationMaxOutputBytes), MessageBytes: int(c.ActivationMaxMessageBytes),
		},
		ActivationRetention: activations.Retention{
			MaxAge: c.ActivationRetention, MaxCount: c.ActivationMaxCount, MaxPerFunction: c.ActivationMaxPerFunction,
		},
		PruneInterval: c.ActivationPruneInterval,
		MaxInputBytes: int(c.MaxInputBytes), CrashHold: hold,
	}
}
