package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/version"
)

const usage = `usage: wisp-agent <command> [flags]

commands:
  run [flags]                 connect to the controller(s) and run functions (flags: run -h)
  invoke <file.wasm> [json]   run a function once on this machine (input: argument, or stdin when "-")
  version                     print the version
`

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runAgent(ctx, args[1:], stderr, getenv)
	case "invoke":
		return invoke(ctx, args[1:], stdin, stdout, stderr, getenv)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "wisp-agent", version.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "wisp-agent: unknown command %q\n%s", args[0], usage)
	return 2
}

func invoke(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", runtime.DefaultLimits.Timeout, "deadline of the invocation")
	memory := fs.Uint64("memory-mib", runtime.DefaultLimits.MemoryBytes>>20, "linear memory cap in MiB")
	engine := fs.String("engine", envOr(getenv, "WISP_ENGINE", runtime.EngineAuto), "wasm engine: auto, compiler or interpreter (env WISP_ENGINE)")
	allow := fs.String("allow-hosts", "", "comma-separated hosts the function may reach with __http_request")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprint(stderr, "usage: wisp-agent invoke [flags] <file.wasm> [json-input|-]\n")
		return 2
	}
	code, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "wisp-agent: %v\n", err)
		return 1
	}
	input := []byte("{}")
	if fs.NArg() == 2 {
		input = []byte(fs.Arg(1))
		if fs.Arg(1) == "-" {
			if input, err = io.ReadAll(stdin); err != nil {
				fmt.Fprintf(stderr, "wisp-agent: reading stdin: %v\n", err)
				return 1
			}
		}
	}
	var hosts []string
	if *allow != "" {
		hosts = strings.Split(*allow, ",")
	}
	rt, err := runtime.New(ctx, runtime.Config{Engine: *engine, Compile: runtime.CompileBudget{Worker: runtime.SelfWorker()}})
	if err != nil {
		fmt.Fprintf(stderr, "wisp-agent: %v\n", err)
		return 2
	}
	defer rt.Close(context.Background())
	info, err := rt.Load(ctx, code)
	if err != nil {
		fmt.Fprintf(stderr, "wisp-agent: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	res, err := rt.Invoke(ctx, info.Digest, runtime.Request{
		Input:        input,
		AllowedHosts: hosts,
		Limits:       runtime.Limits{Timeout: *timeout, MemoryBytes: *memory << 20},
	})
	for _, l := range res.Logs {
		fmt.Fprintf(stderr, "log: %s\n", l)
	}
	if err != nil {
		var rerr *runtime.Error
		if errors.As(err, &rerr) && rerr.Stderr != "" && rerr.Kind != runtime.KindExit {
			fmt.Fprintf(stderr, "stderr: %s\n", strings.TrimSpace(rerr.Stderr))
		}
		fmt.Fprintf(stderr, "wisp-agent: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", res.Output)
	fmt.Fprintf(stderr, "%s, %s, instantiate %v, run %v\n", info.ABI, rt.Engine(), res.Instantiate.Round(time.Microsecond), res.Run.Round(time.Microsecond))
	return 0
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
