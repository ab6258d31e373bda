package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/settings"
)

// config is the agent's whole configuration, one flat struct, filled by its
// settings table (table): defaults < file < environment < flags.
type config struct {
	Controllers []string
	// ResolveInterval is how often controller host names are resolved
	// again (link.PoolConfig.ResolveEvery).
	ResolveInterval time.Duration
	JoinToken       string
	// JoinTokenFile names a file holding the join token (loadConfig
	// reads it into JoinToken), so that the token is on no command line.
	JoinTokenFile string
	DataDir       string
	Name          string
	Labels        []string
	Engine        string
	MetricsAddr   string
	LocalAPI      string // "" disables
	LocalAPISync  bool
	// ReadyRequiresLink: /readyz wants a controller link up.
	ReadyRequiresLink bool
	MQTTBroker        string // "" disables
	Timeout           time.Duration
	MemoryMiB         uint64
	// LogMaxLines and LogMaxBytes bound the log lines a function keeps per
	// invocation (runtime.Limits.LogLines, LogBytes).
	LogMaxLines int
	LogMaxBytes int64
	// ModuleLimits is "key=value,..." over runtime.DefaultModuleLimits.
	ModuleLimits         string
	CompileTimeout       time.Duration
	CompileMemoryMiB     uint64
	CompileWorkers       int
	MaxConcurrent        int
	MaxPerFunction       int
	MaxQueuedPerFunction int
	CompiledCacheMiB     uint64
	Log                  settings.Logging
}

func defaultConfig() config {
	return config{
		DataDir:         "wisp-agent-data",
		ResolveInterval: 30 * time.Second,
		Engine:          runtime.EngineAuto,
		MetricsAddr:     "127.0.0.1:9464",
		LocalAPI:        "127.0.0.1:4080",
		LocalAPISync:    true,
		MQTTBroker:      "tcp://127.0.0.1:1883",
		Timeout:         runtime.DefaultLimits.Timeout,
		MemoryMiB:       runtime.DefaultLimits.MemoryBytes >> 20,
		LogMaxLines:     runtime.DefaultLimits.LogLines,
		LogMaxBytes:     int64(runtime.DefaultLimits.LogBytes),
		Log:             settings.DefaultLogging(),
	}
}

// table is the agent's settings table over c: every setting's flag, WISP_*
// variable and config-file key (internal/settings). The values in c when it
// is called are the defaults --help shows.
func (c *config) table() *settings.Table {
	return &settings.Table{Program: "wisp-agent", ConfigEnv: "WISP_AGENT_CONFIG", Settings: append([]settings.Setting{
		settings.List(&c.Controllers, "controllers", "the controllers to dial, as `host:port,...` of their QUIC listeners (port 4433 by default); the agent keeps a link with each, and with each address a host name resolves to"),
		settings.Duration(&c.ResolveInterval, "resolve_interval", "how often controller host names are resolved again (also when a link goes down): a new address gets a link, a vanished one loses it once its session ends"),
		settings.String(&c.JoinToken, "join_token", "join `token` from wisp-controller token create; used on the first start only. A flag is visible to every local user (ps): prefer WISP_JOIN_TOKEN or --join-token-file"),
		settings.String(&c.JoinTokenFile, "join_token_file", "`file` holding the join token (first start only; a missing file is fine once the agent has joined)"),
		settings.String(&c.DataDir, "data_dir", "data `dir`: the agent's state file, the key sealing its secrets (secrets.key), local API token, compilation cache"),
		settings.String(&c.Name, "agent_name", "this agent's `name` in the fleet").WithDefault(`"": the host name`),
		settings.List(&c.Labels, "labels", "this agent's `key=value,...` labels, for APP scheduling"),
		settings.Choice(&c.Engine, "engine", "wasm engine", runtime.EngineAuto, runtime.EngineCompiler, runtime.EngineInterpreter),
		settings.String(&c.MetricsAddr, "metrics_addr", "Prometheus /metrics listen `address`; empty disables"),
		settings.String(&c.LocalAPI, "local_api", "local invoke API listen `address`; empty disables"),
		settings.Bool(&c.LocalAPISync, "local_api_sync", "answer local API calls only after their activation is fsync'd to the outbox"),
		settings.Bool(&c.ReadyRequiresLink, "ready_requires_link", "answer 503 on /readyz while no controller link is up (off: an agent cut off from its controllers still serves its local API and triggers, so it stays ready)"),
		settings.String(&c.MQTTBroker, "mqtt_broker", "the box's MQTT broker `URL` for edge-local triggers; empty disables"),
		settings.Duration(&c.Timeout, "timeout", "deadline of an invocation whose request sets none"),
		settings.Uint(&c.MemoryMiB, "memory_mib", "linear memory cap of an instance, in `MiB`"),
		settings.Int(&c.LogMaxLines, "log_max_lines", "most log lines a function keeps per invocation (console_log, stdio); the rest is dropped and a marker line says how much (1 to 10000)"),
		settings.Size(&c.LogMaxBytes, "log_max_bytes", "most bytes of log lines a function keeps per invocation, partial lines included (1 byte to 1 MiB)"),
		settings.Int(&c.MaxConcurrent, "max_concurrent", "instances at once").WithDefault("0: 8 × GOMAXPROCS"),
		settings.Int(&c.MaxPerFunction, "max_per_function", "instances of one function at once").WithDefault("0: GOMAXPROCS-1, at least 1"),
		settings.Int(&c.MaxQueuedPerFunction, "max_queued_per_function", "calls of one function waiting for an instance before more are refused as overloaded").WithDefault("0: 256"),
		settings.String(&c.ModuleLimits, "module_limits", "static limits on modules, `key=value,...` over the defaults: "+runtime.DefaultModuleLimits.String()),
		settings.Duration(&c.CompileTimeout, "compile_timeout", "time budget of one compilation in a worker").WithDefault("0: 60s"),
		settings.Uint(&c.CompileMemoryMiB, "compile_memory_mib", "memory budget of one compilation worker, in `MiB`").WithDefault("0: 1024"),
		settings.Uint(&c.CompiledCacheMiB, "compiled_cache_mib", "memory the compiled functions kept in memory may take, as estimated from their code, in `MiB` (the least recently used leave it; their code stays in the disk cache; a Go guest is estimated at about 22)").WithDefault("0: 8"),
		settings.Int(&c.CompileWorkers, "compile_workers", "compilations in worker processes at once").WithDefault("0: GOMAXPROCS/2, at least 1"),
	}, c.Log.Settings()...)}
}

// addFlags adds the settings' flags (the keys given, or all) to fs, with
// their defaults.
func addFlags(fs *pflag.FlagSet, keys ...string) {
	def := defaultConfig()
	def.table().AddFlags(fs, keys...)
}

// loadConfig is the configuration: the defaults, then the config file, the
// environment and the flags set on fs (see settings.Table.Load), checked.
func loadConfig(fs *pflag.FlagSet, env settings.LookupEnv, warn io.Writer) (config, error) {
	c := defaultConfig()
	if err := c.table().Load(fs, env, warn); err != nil {
		return c, err
	}
	if fs != nil && fs.Changed("join-token") {
		fmt.Fprintln(warn, "wisp-agent: warning: --join-token is visible to every local user (ps, /proc/*/cmdline); prefer WISP_JOIN_TOKEN or --join-token-file")
	}
	if err := c.readJoinTokenFile(warn); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// The largest log bounds: an outbox entry carries its activation's log, and
// a batch of them one frame (protocol.MaxFrameSize).
const (
	maxLogLines = 10_000
	maxLogBytes = 1 << 20
)

// maxJoinTokenFile bounds what readJoinTokenFile reads.
const maxJoinTokenFile = 4 << 10

// readJoinTokenFile fills JoinToken from JoinTokenFile. The file is needed
// on the first start only, so a missing one is a warning.
func (c *config) readJoinTokenFile(warn io.Writer) error {
	if c.JoinTokenFile == "" {
		return nil
	}
	if c.JoinToken != "" {
		return errors.New("both join_token and join_token_file are set: keep one")
	}
	f, err := os.Open(c.JoinTokenFile)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(warn, "wisp-agent: warning: join token file %s does not exist (fine once this agent has joined)\n", c.JoinTokenFile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("join token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJoinTokenFile+1))
	if err != nil {
		return fmt.Errorf("join token file: %w", err)
	}
	if len(b) > maxJoinTokenFile {
		return fmt.Errorf("join token file %s is over %d bytes: is it the right file?", c.JoinTokenFile, maxJoinTokenFile)
	}
	c.JoinToken = strings.TrimSpace(string(b))
	if c.JoinToken == "" {
		return fmt.Errorf("join token file %s is empty", c.JoinTokenFile)
	}
	return nil
}

// Validate reports the first problem.
func (c config) Validate() error {
	if len(c.Controllers) == 0 {
		return errors.New("no controller address: set --controllers or WISP_CONTROLLERS (host:port of the controller's QUIC port, default port 4433)")
	}
	for _, l := range c.Labels {
		if !strings.Contains(l, "=") {
			return fmt.Errorf("label %q: want key=value", l)
		}
	}
	if c.DataDir == "" {
		return errors.New("data dir must not be empty")
	}
	if c.ResolveInterval < time.Second {
		return fmt.Errorf("resolve interval %s: want 1s or more", c.ResolveInterval)
	}
	if c.Timeout <= 0 {
		return errors.New("timeout must be positive")
	}
	if c.LogMaxLines < 1 || c.LogMaxLines > maxLogLines {
		return fmt.Errorf("log max lines %d: want 1 to %d", c.LogMaxLines, maxLogLines)
	}
	if c.LogMaxBytes < 1 || c.LogMaxBytes > maxLogBytes {
		return fmt.Errorf("log max bytes %d: want 1 byte to 1 MiB", c.LogMaxBytes)
	}
	if _, err := runtime.ParseModuleLimits(c.ModuleLimits); err != nil {
		return err
	}
	if c.CompiledCacheMiB > 1<<20 {
		return fmt.Errorf("compiled cache %d MiB: at most 1 TiB", c.CompiledCacheMiB)
	}
	if c.CompileTimeout < 0 || c.CompileWorkers < 0 {
		return errors.New("compile timeout and workers must not be negative")
	}
	return runtime.Config{Engine: c.Engine, MaxConcurrent: c.MaxConcurrent,
		MaxPerFunction: c.MaxPerFunction, MaxQueuedPerFunction: c.MaxQueuedPerFunction}.Validate()
}
