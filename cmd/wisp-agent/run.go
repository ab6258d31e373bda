package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/settings"
	"github.com/wispfn/wisp/protocol"
)

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env settings.LookupEnv) int {
	d := deps{env: env, stdin: stdin, stdout: stdout, stderr: stderr}
	return settings.Execute(ctx, rootCommand(d), args, stdout, stderr)
}

// deps is what run takes from the process.
type deps struct {
	env            settings.LookupEnv
	stdin          io.Reader
	stdout, stderr io.Writer
}

func rootCommand(d deps) *cobra.Command {
	root := settings.Server(&cobra.Command{
		Use:   "wisp-agent",
		Short: "Run the Wisp edge agent",
		Long: `wisp-agent is Wisp's edge agent: it dials the controllers over QUIC, keeps
the functions it was given in its data dir, runs them with wazero, and serves
the box's own callers (local invoke API, MQTT triggers) with or without the
controllers. Without a command it runs the agent, as 'wisp-agent run' does.

Every setting is a flag, a WISP_* environment variable and a key of the
YAML config file (--config or WISP_AGENT_CONFIG): --data-dir is
WISP_DATA_DIR and data_dir. Each source overrides the one before:
defaults < config file < environment < flags. A variable set to the empty
string counts as set: WISP_LOCAL_API= turns the local API off.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, d) },
	})
	addFlags(root.Flags())
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Connect to the controllers and run functions until SIGINT or SIGTERM (the default command)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, d) },
	}
	addFlags(runCmd.Flags())
	root.AddCommand(runCmd, invokeCommand(d), statusCommand(d), healthcheckCommand(d))
	return root
}

// invokeCommand is `wisp-agent invoke`: one function run on this machine
// with the agent's runtime, no controller.
func invokeCommand(d deps) *cobra.Command {
	var allow, env []string
	cmd := &cobra.Command{
		Use:   "invoke [flags] <file.wasm> [json-input|-]",
		Short: "Run a function once on this machine (input: argument, or stdin when \"-\")",
		Long: `Run a function once on this machine with the agent's runtime, no controller:
the output JSON goes to stdout, the function's log lines to stderr. The input
is the second argument, stdin when it is "-", else {}.

--timeout, --memory-mib and --engine are the agent's settings (WISP_TIMEOUT,
WISP_MEMORY_MIB, WISP_ENGINE, the config file).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := defaultConfig()
			if err := cfg.table().Load(cmd.Flags(), d.env, d.stderr); err != nil {
				return settings.UsageError(err)
			}
			return invoke(cmd.Context(), cfg, allow, env, args, d)
		},
	}
	addFlags(cmd.Flags(), "timeout", "memory_mib", "engine")
	cmd.Flags().StringSliceVar(&allow, "allow-hosts", nil, "`hosts` the function may reach with __http_request, comma-separated: *, host (any port), host:port, *.example.com")
	cmd.Flags().StringArrayVar(&env, "env", nil, "an environment variable of the function, `NAME=value` (repeatable)")
	return cmd
}

func invoke(ctx context.Context, cfg config, hosts, env []string, args []string, d deps) error {
	stdin, stdout, stderr := d.stdin, d.stdout, d.stderr
	code, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	input := []byte("{}")
	if len(args) == 2 {
		input = []byte(args[1])
		if args[1] == "-" {
			if input, err = io.ReadAll(stdin); err != nil {
				return fmt.Errorf("reading stdin: %w", err)
			}
		}
	}
	rt, err := runtime.New(ctx, runtime.Config{Engine: cfg.Engine, Compile: runtime.CompileBudget{Worker: runtime.SelfWorker()}})
	if err != nil {
		return settings.UsageError(err)
	}
	defer rt.Close(context.Background())
	info, err := rt.Load(ctx, code)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	res, err := rt.Invoke(ctx, info.Digest, runtime.Request{
		Input:        input,
		AllowedHosts: hosts,
		Env:          env,
		Limits:       runtime.Limits{Timeout: cfg.Timeout, MemoryBytes: cfg.MemoryMiB << 20},
	})
	for _, l := range res.Logs {
		if l.Stream == protocol.StreamConsole {
			fmt.Fprintf(stderr, "log: %s\n", l.Text)
		} else {
			fmt.Fprintf(stderr, "log (%s): %s\n", l.Stream, l.Text)
		}
	}
	if err != nil {
		var rerr *runtime.Error
		if errors.As(err, &rerr) && rerr.Stderr != "" && rerr.Kind != runtime.KindExit {
			fmt.Fprintf(stderr, "stderr: %s\n", strings.TrimSpace(rerr.Stderr))
		}
		return err
	}
	fmt.Fprintf(stdout, "%s\n", res.Output)
	fmt.Fprintf(stderr, "%s, %s, instantiate %v, run %v\n", info.ABI, rt.Engine(), res.Instantiate.Round(time.Microsecond), res.Run.Round(time.Microsecond))
	return nil
}
