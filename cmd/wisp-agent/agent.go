package main

import (
	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/agent/node"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/gctune"
	"github.com/wispfn/wisp/internal/settings"
)

// runAgent is `wisp-agent run` (and bare `wisp-agent`): connect to the
// controllers and serve them until the command's context is done, then
// drain.
func runAgent(cmd *cobra.Command, d deps) error {
	cfg, err := loadConfig(cmd.Flags(), d.env, d.stderr)
	if err != nil {
		return settings.UsageError(err)
	}
	log := cfg.Log.Logger(d.stderr)
	defer gctune.Start(gcHeadroom)()
	if err := node.Run(cmd.Context(), cfg.node(), log); err != nil {
		log.Error("agent stopped", "err", err)
		return settings.Logged(err)
	}
	return nil
}

// gcHeadroom is how much the agent's heap may grow between collections
// while its live heap is smaller than that (internal/gctune): at GOGC=100
// the collector took ~40 % of the agent's CPU under load, and this headroom
// costs at most 16 MiB more than GOGC=100 would hold (measured: peak RSS
// 28 → 40 MiB under the 64-client benchmark; docs/decisions.md). Setting
// GOGC turns it off; GOMEMLIMIT still caps the heap.
const gcHeadroom = 16 << 20

// node is the configuration node.Run takes.
func (c config) node() node.Config {
	limits, _ := runtime.ParseModuleLimits(c.ModuleLimits) // checked by Validate
	return node.Config{
		Controllers: c.Controllers, ResolveEvery: c.ResolveInterval, JoinToken: c.JoinToken, DataDir: c.DataDir, Name: c.Name, Labels: c.Labels,
		Engine: c.Engine, MetricsAddr: c.MetricsAddr, LocalAPI: c.LocalAPI, LocalAPIUnsynced: !c.LocalAPISync, MQTTBroker: c.MQTTBroker,
		ReadyRequiresLink: c.ReadyRequiresLink,
		Timeout:           c.Timeout, MemoryMiB: c.MemoryMiB, LogMaxLines: c.LogMaxLines, LogMaxBytes: int(c.LogMaxBytes), MaxConcurrent: c.MaxConcurrent,
		ModuleLimits: limits, Compile: runtime.CompileBudget{
			Timeout: c.CompileTimeout, MemoryBytes: c.CompileMemoryMiB << 20, Concurrent: c.CompileWorkers,
			Worker: runtime.SelfWorker(),
		},
		MaxPerFunction: c.MaxPerFunction, MaxQueuedPerFunction: c.MaxQueuedPerFunction,
		MaxCompiledBytes: int64(c.CompiledCacheMiB) << 20,
	}
}
