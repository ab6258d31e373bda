package main

import (
	"context"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/internal/settings"
)

// run is main without the process: exit code instead of os.Exit.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, deps{env: os.LookupEnv, stdout: stdout, stderr: stderr})
}

// deps is what run takes from the process, so tests can supply their own.
type deps struct {
	env    settings.LookupEnv
	stdout io.Writer
	stderr io.Writer
	// ready, when set, is called with the REST listener's address once the
	// controller is about to serve.
	ready func(addr net.Addr)
}

// getenv reads one variable through env (the secrets keys, which are no
// settings: they must not show in --help or config files).
func (d deps) getenv(name string) string {
	v, _ := d.env(name)
	return v
}

// runWith runs the command line args: the controller itself (no command,
// or run), token create, compact, version.
func runWith(ctx context.Context, args []string, d deps) int {
	return settings.Execute(ctx, rootCommand(d), args, d.stdout, d.stderr)
}

func rootCommand(d deps) *cobra.Command {
	root := settings.Server(&cobra.Command{
		Use:   "wisp-controller",
		Short: "Run the Wisp controller (FunLess REST API, QUIC listener for agents)",
		Long: `wisp-controller runs the Wisp controller: the FunLess REST API over a
Postgres store (--database-url) or, with none, an embedded store in the
data dir, and the QUIC listener agents dial. Without a command it runs the
controller, as 'wisp-controller run' does.

Every setting is a flag, a WISP_* environment variable and a key of the
YAML config file (--config or WISP_CONTROLLER_CONFIG): --data-dir is
WISP_DATA_DIR and data_dir. Each source overrides the one before:
defaults < config file < environment < flags. A variable set to the empty
string counts as set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return serve(cmd, d) },
	})
	addFlags(root)
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Run the controller until SIGINT or SIGTERM (the default command)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return serve(cmd, d) },
	}
	addFlags(runCmd)
	root.AddCommand(runCmd, tokenCommand(d), compactCommand(d), adminTokenCommand(d), tlsCommand(d), healthcheckCommand(d), secretsCommand(d))
	return root
}

// addFlags adds the settings' flags (the keys given, or all) to cmd, with
// their defaults.
func addFlags(cmd *cobra.Command, keys ...string) {
	def := defaults()
	def.table().AddFlags(cmd.Flags(), keys...)
}

// load is loadConfig over cmd's flags, its errors usage errors.
func load(cmd *cobra.Command, d deps) (config, error) {
	cfg, err := loadConfig(cmd.Flags(), d.env, d.stderr)
	return cfg, settings.UsageError(err)
}

func serve(cmd *cobra.Command, d deps) error {
	cfg, err := load(cmd, d)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(d.stderr)
	var ready func(rest, quic net.Addr)
	if d.ready != nil {
		ready = func(rest, _ net.Addr) { d.ready(rest) }
	}
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			log.Error("controller stopped", "err", err)
			return settings.Logged(err)
		}
		defer stop()
	}
	scfg := cfg.server()
	scfg.Getenv = d.getenv
	if err := server.Run(cmd.Context(), scfg, log, ready); err != nil {
		log.Error("controller stopped", "err", err)
		return settings.Logged(err)
	}
	return nil
}

// server is the part of the configuration server.Run takes.
func (c config) server() server.Config {
	limits, _ := runtime.ParseModuleLimits(c.ModuleLimits) // checked by Validate
	hold := c.CrashHold
	if hold == 0 {
		hold = -1 // off
	}
	return server.Config{
		Listen: c.Listen, QUICListen: c.QUICListen, DataDir: c.DataDir, DatabaseURL: c.DatabaseURL,
		MaxUploadBytes: c.MaxUploadBytes, ShutdownTimeout: c.ShutdownTimeout, InvokeTimeout: c.InvokeTimeout,
		FunctionVersions: c.FunctionVersions,
		ModuleLimits:     limits, Compile: runtime.CompileBudget{
			Timeout: c.CompileTimeout, MemoryBytes: uint64(c.CompileMemory), Concurrent: c.CompileWorkers,
			Worker: runtime.SelfWorker(),
		},
		ActivationBounds: activations.Bounds{
			OutputBytes: int(c.ActivationMaxOutputBytes), MessageBytes: int(c.ActivationMaxMessageBytes),
			LogLines: c.ActivationMaxLogLines, LogBytes: int(c.ActivationMaxLogBytes),
		},
		ActivationRetention: activations.Retention{
			MaxAge: c.ActivationRetention, MaxCount: c.ActivationMaxCount, MaxPerFunction: c.ActivationMaxPerFunction,
		},
		PruneInterval: c.ActivationPruneInterval,
		MaxInputBytes: int(c.MaxInputBytes), CrashHold: hold,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSSelfSigned: c.TLS == "auto",
		MetricsListen:     c.MetricsAddr,
		OTLPEndpoint:      c.OTLPEndpoint,
		DefaultAllowHosts: lowerAll(c.DefaultAllowHosts),
		InstanceID:        c.InstanceID,
		SecretsKeyFile:    c.SecretsKeyFile, SecretsOldKeyFiles: c.SecretsOldKeyFiles,
	}
}

// lowerAll lowercases host patterns as fnspec.ParseConfig does.
func lowerAll(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, strings.ToLower(h))
	}
	return out
}
