package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/api"
)

// config is the controller's whole configuration, one flat struct.
// Precedence: defaults < file < environment < flags.
type config struct {
	Listen          string        `yaml:"listen"`
	QUICListen      string        `yaml:"quic_listen"`
	InvokeTimeout   time.Duration `yaml:"invoke_timeout"`
	DataDir         string        `yaml:"data_dir"`
	DatabaseURL     string        `yaml:"database_url"`
	MaxUploadBytes  int64         `yaml:"max_upload_bytes"`
	MaxInputBytes   int64         `yaml:"max_input_bytes"`
	CrashHold       time.Duration `yaml:"crash_hold"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	LogLevel        string        `yaml:"log_level"`
	LogFormat       string        `yaml:"log_format"`
	// ModuleLimits is "key=value,..." over runtime.DefaultModuleLimits
	// (see runtime.ParseModuleLimits); module size defaults to the upload
	// limit.
	ModuleLimits   string        `yaml:"module_limits"`
	CompileTimeout time.Duration `yaml:"compile_timeout"`
	CompileMemory  int64         `yaml:"compile_memory"`
	CompileWorkers int           `yaml:"compile_workers"`

	// What the store keeps of activations: each record's output and error
	// message are cut to the first two; the next three bound how many
	// records are kept (0: no bound), checked every prune interval.
	ActivationMaxOutputBytes  int64         `yaml:"activation_max_output_bytes"`
	ActivationMaxMessageBytes int64         `yaml:"activation_max_message_bytes"`
	ActivationRetention       time.Duration `yaml:"activation_retention"`
	ActivationMaxCount        int           `yaml:"activation_max_count"`
	ActivationMaxPerFunction  int           `yaml:"activation_max_per_function"`
	ActivationPruneInterval   time.Duration `yaml:"activation_prune_interval"`
}

func defaults() config {
	return config{
		Listen:          ":4000",
		QUICListen:      ":4433",
		InvokeTimeout:   30 * time.Second,
		DataDir:         "./wisp-data",
		MaxUploadBytes:  api.DefaultMaxUploadBytes,
		MaxInputBytes:   int64(runtime.DefaultLimits.InputBytes),
		CrashHold:       30 * time.Second,
		ShutdownTimeout: api.DefaultShutdownTimeout,
		LogLevel:        "info",
		LogFormat:       "text",

		ActivationMaxOutputBytes:  activations.DefaultOutputBytes,
		ActivationMaxMessageBytes: activations.DefaultMessageBytes,
		ActivationRetention:       activations.DefaultRetention.MaxAge,
		ActivationMaxCount:        activations.DefaultRetention.MaxCount,
		ActivationMaxPerFunction:  activations.DefaultRetention.MaxPerFunction,
		ActivationPruneInterval:   activations.DefaultPruneInterval,
	}
}

// envVars maps each setting to its environment variable.
var envVars = []struct {
	name string
	set  func(*config, string) error
}{
	{"WISP_LISTEN", func(c *config, v string) error { c.Listen = v; return nil }},
	{"WISP_QUIC_LISTEN", func(c *config, v string) error { c.QUICListen = v; return nil }},
	{"WISP_INVOKE_TIMEOUT", func(c *config, v string) (err error) { c.InvokeTimeout, err = time.ParseDuration(v); return err }},
	{"WISP_DATA_DIR", func(c *config, v string) error { c.DataDir = v; return nil }},
	{"WISP_DATABASE_URL", func(c *config, v string) error { c.DatabaseURL = v; return nil }},
	{"WISP_MAX_UPLOAD_BYTES", func(c *config, v string) (err error) { c.MaxUploadBytes, err = parseBytes(v); return err }},
	{"WISP_MAX_INPUT_BYTES", func(c *config, v string) (err error) { c.MaxInputBytes, err = parseBytes(v); return err }},
	{"WISP_CRASH_HOLD", func(c *config, v string) (err error) { c.CrashHold, err = time.ParseDuration(v); return err }},
	{"WISP_SHUTDOWN_TIMEOUT", func(c *config, v string) (err error) { c.ShutdownTimeout, err = time.ParseDuration(v); return err }},
	{"WISP_LOG_LEVEL", func(c *config, v string) error { c.LogLevel = v; return nil }},
	{"WISP_LOG_FORMAT", func(c *config, v string) error { c.LogFormat = v; return nil }},
	{"WISP_MODULE_LIMITS", func(c *config, v string) error { c.ModuleLimits = v; return nil }},
	{"WISP_COMPILE_TIMEOUT", func(c *config, v string) (err error) { c.CompileTimeout, err = time.ParseDuration(v); return err }},
	{"WISP_COMPILE_MEMORY", func(c *config, v string) (err error) { c.CompileMemory, err = parseBytes(v); return err }},
	{"WISP_COMPILE_WORKERS", func(c *config, v string) (err error) { c.CompileWorkers, err = strconv.Atoi(v); return err }},
	{"WISP_ACTIVATION_MAX_OUTPUT_BYTES", func(c *config, v string) (err error) { c.ActivationMaxOutputBytes, err = parseBytes(v); return err }},
	{"WISP_ACTIVATION_MAX_MESSAGE_BYTES", func(c *config, v string) (err error) { c.ActivationMaxMessageBytes, err = parseBytes(v); return err }},
	{"WISP_ACTIVATION_RETENTION", func(c *config, v string) (err error) { c.ActivationRetention, err = time.ParseDuration(v); return err }},
	{"WISP_ACTIVATION_MAX_COUNT", func(c *config, v string) (err error) { c.ActivationMaxCount, err = strconv.Atoi(v); return err }},
	{"WISP_ACTIVATION_MAX_PER_FUNCTION", func(c *config, v string) (err error) { c.ActivationMaxPerFunction, err = strconv.Atoi(v); return err }},
	{"WISP_ACTIVATION_PRUNE_INTERVAL", func(c *config, v string) (err error) {
		c.ActivationPruneInterval, err = time.ParseDuration(v)
		return err
	}},
}

// loadConfig builds the configuration from args and getenv. It returns
// flag.ErrHelp for -h.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := defaults()
	fs := flag.NewFlagSet("wisp-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("WISP_CONFIG"), "YAML config `file` (env WISP_CONFIG)")
	listen := fs.String("listen", "", "REST API listen `address` (env WISP_LISTEN, default :4000)")
	quicListen := fs.String("quic-listen", "", "UDP `address` agents connect to over QUIC (env WISP_QUIC_LISTEN, default :4433)")
	invokeTimeout := fs.Duration("invoke-timeout", 0, "deadline of an invocation whose request sets none (env WISP_INVOKE_TIMEOUT, default 30s)")
	dataDir := fs.String("data-dir", "", "data `dir`: admin token, embedded store (env WISP_DATA_DIR, default ./wisp-data)")
	dsn := fs.String("database-url", "", "Postgres `DSN`; empty uses the embedded store <data-dir>/controller.db (env WISP_DATABASE_URL)")
	maxUpload := fs.String("max-upload-bytes", "", "largest wasm upload, `bytes` or with KiB/MiB suffix (env WISP_MAX_UPLOAD_BYTES, default 16MiB)")
	maxInput := fs.String("max-input-bytes", "", "largest invocation args (compact JSON), `bytes` or with KiB/MiB suffix; larger is 413 before dispatch; keep it at the agents' input limit (env WISP_MAX_INPUT_BYTES, default 1MiB)")
	crashHold := fs.Duration("crash-hold", 0, "how long code is held (its invocations answered 423) after an agent went silent running it, unless the agent reconnects sooner; 0 disables (env WISP_CRASH_HOLD, default 30s)")
	shutdown := fs.Duration("shutdown-timeout", 0, "how long to let in-flight requests finish on shutdown (env WISP_SHUTDOWN_TIMEOUT, default 10s)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (env WISP_LOG_LEVEL)")
	logFormat := fs.String("log-format", "", "text or json (env WISP_LOG_FORMAT)")
	moduleLimits := fs.String("module-limits", "", "static limits on uploaded modules, `key=value,...` over the defaults: "+runtime.DefaultModuleLimits.String()+" (env WISP_MODULE_LIMITS)")
	compileTimeout := fs.Duration("compile-timeout", 0, "time budget of one upload's compilation (env WISP_COMPILE_TIMEOUT, default 60s)")
	compileMemory := fs.String("compile-memory", "", "memory budget of one compilation, `bytes` or with KiB/MiB/GiB suffix (env WISP_COMPILE_MEMORY, default 1GiB)")
	compileWorkers := fs.Int("compile-workers", 0, "compilations in worker processes at once (env WISP_COMPILE_WORKERS, default GOMAXPROCS/2, at least 1)")
	maxOutput := fs.String("activation-max-output-bytes", "", "most of a function's output an activation record keeps, `bytes` or with KiB/MiB suffix; the rest is cut and the record marked truncated (env WISP_ACTIVATION_MAX_OUTPUT_BYTES, default 64KiB)")
	maxMessage := fs.String("activation-max-message-bytes", "", "most of an error message an activation record keeps, `bytes` or with KiB suffix (env WISP_ACTIVATION_MAX_MESSAGE_BYTES, default 8KiB)")
	retention := fs.Duration("activation-retention", 0, "remove activation records older than this; 0 keeps them whatever their age (env WISP_ACTIVATION_RETENTION, default 168h)")
	maxCount := fs.Int("activation-max-count", 0, "keep at most the newest `N` activation records in all; 0: no bound (env WISP_ACTIVATION_MAX_COUNT, default 100000)")
	maxPerFunction := fs.Int("activation-max-per-function", 0, "keep at most the newest `N` activation records of each function; 0: no bound (env WISP_ACTIVATION_MAX_PER_FUNCTION, default 10000)")
	pruneInterval := fs.Duration("activation-prune-interval", 0, "time between two removals of the activation records out of those bounds; one runs at start (env WISP_ACTIVATION_PRUNE_INTERVAL, default 1m)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, fmt.Errorf("config file: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config file %s: %w", *configFile, err)
		}
	}
	for _, ev := range envVars {
		if v := getenv(ev.name); v != "" {
			if err := ev.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("%s=%q: %w", ev.name, v, err)
			}
		}
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "quic-listen":
			cfg.QUICListen = *quicListen
		case "invoke-timeout":
			cfg.InvokeTimeout = *invokeTimeout
		case "data-dir":
			cfg.DataDir = *dataDir
		case "database-url":
			cfg.DatabaseURL = *dsn
		case "max-upload-bytes":
			if n, e := parseBytes(*maxUpload); e != nil {
				err = fmt.Errorf("-max-upload-bytes: %w", e)
			} else {
				cfg.MaxUploadBytes = n
			}
		case "max-input-bytes":
			if n, e := parseBytes(*maxInput); e != nil {
				err = fmt.Errorf("-max-input-bytes: %w", e)
			} else {
				cfg.MaxInputBytes = n
			}
		case "crash-hold":
			cfg.CrashHold = *crashHold
		case "shutdown-timeout":
			cfg.ShutdownTimeout = *shutdown
		case "log-level":
			cfg.LogLevel = *logLevel
		case "log-format":
			cfg.LogFormat = *logFormat
		case "module-limits":
			cfg.ModuleLimits = *moduleLimits
		case "compile-timeout":
			cfg.CompileTimeout = *compileTimeout
		case "compile-memory":
			if n, e := parseBytes(*compileMemory); e != nil {
				err = fmt.Errorf("-compile-memory: %w", e)
			} else {
				cfg.CompileMemory = n
			}
		case "compile-workers":
			cfg.CompileWorkers = *compileWorkers
		case "activation-max-output-bytes":
			if n, e := parseBytes(*maxOutput); e != nil {
				err = fmt.Errorf("-activation-max-output-bytes: %w", e)
			} else {
				cfg.ActivationMaxOutputBytes = n
			}
		case "activation-max-message-bytes":
			if n, e := parseBytes(*maxMessage); e != nil {
				err = fmt.Errorf("-activation-max-message-bytes: %w", e)
			} else {
				cfg.ActivationMaxMessageBytes = n
			}
		case "activation-retention":
			cfg.ActivationRetention = *retention
		case "activation-max-count":
			cfg.ActivationMaxCount = *maxCount
		case "activation-max-per-function":
			cfg.ActivationMaxPerFunction = *maxPerFunction
		case "activation-prune-interval":
			cfg.ActivationPruneInterval = *pruneInterval
		}
	})
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Validate checks the values loadConfig cannot check one by one.
func (c config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen address is empty"))
	}
	if c.QUICListen == "" {
		errs = append(errs, errors.New("QUIC listen address is empty"))
	}
	if c.InvokeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("invoke timeout %s: want more than 0", c.InvokeTimeout))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if c.MaxUploadBytes <= 0 || c.MaxUploadBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max upload bytes %d: want 1 byte to 1 GiB", c.MaxUploadBytes))
	}
	if c.MaxInputBytes <= 0 || c.MaxInputBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("max input bytes %d: want 1 byte to 64 MiB", c.MaxInputBytes))
	}
	if c.CrashHold < 0 {
		errs = append(errs, fmt.Errorf("crash hold %s: want 0 (off) or more", c.CrashHold))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout %s: want more than 0", c.ShutdownTimeout))
	}
	if _, err := runtime.ParseModuleLimits(c.ModuleLimits); err != nil {
		errs = append(errs, err)
	}
	if c.CompileTimeout < 0 || c.CompileMemory < 0 || c.CompileWorkers < 0 {
		errs = append(errs, errors.New("compile timeout, memory and workers must not be negative"))
	}
	if c.ActivationMaxOutputBytes <= 0 || c.ActivationMaxOutputBytes > maxActivationOutputBytes {
		errs = append(errs, fmt.Errorf("activation max output bytes %d: want 1 byte to 64 MiB", c.ActivationMaxOutputBytes))
	}
	if c.ActivationMaxMessageBytes <= 0 || c.ActivationMaxMessageBytes > maxActivationMessageBytes {
		errs = append(errs, fmt.Errorf("activation max message bytes %d: want 1 byte to 1 MiB", c.ActivationMaxMessageBytes))
	}
	if c.ActivationRetention < 0 {
		errs = append(errs, fmt.Errorf("activation retention %s: want 0 (no bound) or more", c.ActivationRetention))
	}
	if c.ActivationMaxCount < 0 {
		errs = append(errs, fmt.Errorf("activation max count %d: want 0 (no bound) or more", c.ActivationMaxCount))
	}
	if c.ActivationMaxPerFunction < 0 {
		errs = append(errs, fmt.Errorf("activation max per function %d: want 0 (no bound) or more", c.ActivationMaxPerFunction))
	}
	if c.ActivationPruneInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("activation prune interval %s: want 100ms or more", c.ActivationPruneInterval))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// Upper bounds of the activation record bounds: an agent's output is 1 MiB
// by default, so 64 MiB already means "keep every output whole".
const (
	maxActivationOutputBytes  = 64 << 20
	maxActivationMessageBytes = 1 << 20
)

// parseBytes reads 1048576, 1024KiB, 16MiB or 1GiB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a positive size (bytes, or with a KiB, MiB or GiB suffix)", s)
	}
	return n * mult, nil
}
