package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/wispfn/wisp/agent/node"
	"github.com/wispfn/wisp/agent/runtime"
)

// runAgent is `wisp-agent run`: connect to the controllers and serve them
// until ctx is done, then drain.
func runAgent(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(args, getenv, fs)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "wisp-agent: %v\n", err)
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := node.Run(ctx, cfg.node(), log); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// node is the configuration node.Run takes.
func (c config) node() node.Config {
	limits, _ := runtime.ParseModuleLimits(c.ModuleLimits) // checked by set
	return node.Config{
		Controllers: c.Controllers, JoinToken: c.JoinToken, DataDir: c.DataDir, Name: c.Name, Labels: c.Labels,
		Engine: c.Engine, MetricsAddr: c.MetricsAddr, LocalAPI: c.LocalAPI, LocalAPIUnsynced: !c.LocalAPISync, MQTTBroker: c.MQTTBroker,
		Timeout: c.Timeout, MemoryMiB: c.MemoryMiB, MaxConcurrent: c.MaxConcurrent,
		ModuleLimits: limits, Compile: runtime.CompileBudget{
			Timeout: c.CompileTimeout, MemoryBytes: c.CompileMemoryMiB << 20, Concurrent: c.CompileWorkers,
			Worker: runtime.SelfWorker(),
		},
		MaxPerFunction: c.MaxPerFunction, MaxQueuedPerFunction: c.MaxQueuedPerFunction,
	}
}
