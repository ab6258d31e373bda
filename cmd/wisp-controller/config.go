package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/pflag"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/api"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/internal/settings"
)

// config is the controller's whole configuration, one flat struct, filled
// by its settings table (table): defaults < file < environment < flags.
type config struct {
	Listen          string
	QUICListen      string
	InvokeTimeout   time.Duration
	DataDir         string
	DatabaseURL     string
	MaxUploadBytes  int64
	MaxInputBytes   int64
	CrashHold       time.Duration
	ShutdownTimeout time.Duration
	// FunctionVersions is how many versions of each function are kept
	// (the current one included) for rollbacks.
	FunctionVersions int
	Log              settings.Logging
	// TLS is "auto" (the files of TLSCert and TLSKey when given, else the
	// controller's self-signed certificate in the data dir) or "off"
	// (plain HTTP).
	TLS             string
	TLSCert, TLSKey string
	// MetricsAddr serves /metrics on its own listener (no token); empty:
	// on the REST port, for the admin token.
	MetricsAddr string
	// PprofAddr, when set, serves Go's profiles (net/http/pprof) there:
	// no token, so a loopback or otherwise private address.
	PprofAddr string
	// OTLPEndpoint, when set, exports trace spans there over OTLP/HTTP
	// (http://host:4318); empty: tracing off.
	OTLPEndpoint string
	// ModuleLimits is "key=value,..." over runtime.DefaultModuleLimits
	// (see runtime.ParseModuleLimits); module size defaults to the upload
	// limit.
	ModuleLimits   string
	CompileTimeout time.Duration
	CompileMemory  int64
	CompileWorkers int
	// DefaultAllowHosts is the egress allowlist of functions whose config
	// sets no allow_hosts; empty denies every host.
	DefaultAllowHosts []string
	// InstanceID is server.Config.InstanceID.
	InstanceID string

	// What the store keeps of activations: each record's output, error
	// message and log are cut to the first four; the next three bound how
	// many records are kept (0: no bound), checked every prune interval.
	ActivationMaxOutputBytes  int64
	ActivationMaxMessageBytes int64
	ActivationMaxLogLines     int
	ActivationMaxLogBytes     int64
	ActivationRetention       time.Duration
	ActivationMaxCount        int
	ActivationMaxPerFunction  int
	ActivationPruneInterval   time.Duration

	// SecretsKeyFile seals module secrets ("": <data-dir>/secrets.key,
	// made on first start); WISP_SECRETS_KEY (base64) overrides it.
	// SecretsOldKeyFiles only open values sealed before a rotation.
	SecretsKeyFile     string
	SecretsOldKeyFiles []string
}

func defaults() config {
	return config{
		Listen:           ":4000",
		QUICListen:       ":4433",
		InvokeTimeout:    30 * time.Second,
		DataDir:          "./wisp-data",
		MaxUploadBytes:   api.DefaultMaxUploadBytes,
		MaxInputBytes:    int64(runtime.DefaultLimits.InputBytes),
		CrashHold:        30 * time.Second,
		FunctionVersions: api.DefaultFunctionVersions,
		ShutdownTimeout:  api.DefaultShutdownTimeout,
		Log:              settings.DefaultLogging(),
		TLS:              "auto",

		ActivationMaxOutputBytes:  activations.DefaultOutputBytes,
		ActivationMaxMessageBytes: activations.DefaultMessageBytes,
		ActivationMaxLogLines:     activations.DefaultLogLines,
		ActivationMaxLogBytes:     activations.DefaultLogBytes,
		ActivationRetention:       activations.DefaultRetention.MaxAge,
		ActivationMaxCount:        activations.DefaultRetention.MaxCount,
		ActivationMaxPerFunction:  activations.DefaultRetention.MaxPerFunction,
		ActivationPruneInterval:   activations.DefaultPruneInterval,
	}
}

// table is the controller's settings table over c: every setting's flag,
// WISP_* variable and config-file key (internal/settings). The values in c
// when it is called are the defaults --help shows.
func (c *config) table() *settings.Table {
	return &settings.Table{Program: "wisp-controller", ConfigEnv: "WISP_CONTROLLER_CONFIG", Settings: append([]settings.Setting{
		settings.String(&c.Listen, "listen", "REST API listen `address`"),
		settings.String(&c.QUICListen, "quic_listen", "UDP `address` agents connect to over QUIC"),
		settings.Duration(&c.InvokeTimeout, "invoke_timeout", "deadline of an invocation whose request sets none"),
		settings.Choice(&c.TLS, "tls", "REST API transport: auto serves TLS with --tls-cert/--tls-key when given, else with the controller's self-signed certificate in the data dir (pin it: 'wisp-controller tls fingerprint'); off serves plain HTTP", "auto", "off"),
		settings.String(&c.TLSCert, "tls_cert", "PEM certificate (chain) `file` for the REST API; needs --tls-key"),
		settings.String(&c.TLSKey, "tls_key", "PEM private key `file` of --tls-cert"),
		settings.String(&c.MetricsAddr, "metrics_addr", "serve Prometheus /metrics on this `address` (plain HTTP, no token) instead of the REST port, where it needs the admin token"),
		settings.String(&c.PprofAddr, "pprof_addr", "serve Go's runtime profiles (/debug/pprof/, net/http/pprof) on this `address`, plain HTTP and no token: bind it to loopback or a private network; empty: off"),
		settings.String(&c.OTLPEndpoint, "otlp_endpoint", "export trace spans of invocations to this OTLP/HTTP receiver (`URL` such as http://collector:4318, protobuf to /v1/traces); empty: tracing off"),
		settings.String(&c.DataDir, "data_dir", "data `dir`: admin token, QUIC and TLS identity, secrets key, embedded store"),
		settings.String(&c.DatabaseURL, "database_url", "Postgres `DSN`; empty uses the embedded store <data-dir>/controller.db"),
		settings.Size(&c.MaxUploadBytes, "max_upload_bytes", "largest wasm upload"),
		settings.Size(&c.MaxInputBytes, "max_input_bytes", "largest invocation args (compact JSON); larger is 413 before dispatch; keep it at the agents' input limit"),
		settings.String(&c.InstanceID, "controller_id", "this controller's `id` in its cluster (leases, agent links, MQTT client ids); default: the host name and 6 random hex digits, new at each start"),
		settings.List(&c.DefaultAllowHosts, "default_allow_hosts", "egress allowlist of __http_request for functions whose config sets no allow_hosts, comma-separated `patterns`: * (any host), host or IP (any port), host:port, *.example.com (names under it); empty denies every host"),
		settings.Duration(&c.CrashHold, "crash_hold", "how long code is held (its invocations answered 423) after an agent went silent running it, unless the agent reconnects sooner; 0 disables"),
		settings.Duration(&c.ShutdownTimeout, "shutdown_timeout", "on SIGTERM, how long to let REST requests in flight finish (new connections are refused at once), then how long to let the invocations this controller runs on agents return before their sessions close"),
		settings.Int(&c.FunctionVersions, "function_versions", "versions of each function kept for rollbacks, the current one included; the oldest go first (1 to 1000; 1: no rollback)"),
		settings.String(&c.ModuleLimits, "module_limits", "static limits on uploaded modules, `key=value,...` over the defaults: "+runtime.DefaultModuleLimits.String()),
		settings.Duration(&c.CompileTimeout, "compile_timeout", "time budget of one upload's compilation").WithDefault("0: 60s"),
		settings.Size(&c.CompileMemory, "compile_memory", "memory budget of one compilation").WithDefault("1GiB"),
		settings.Int(&c.CompileWorkers, "compile_workers", "compilations in worker processes at once").WithDefault("0: GOMAXPROCS/2, at least 1"),
		settings.Size(&c.ActivationMaxOutputBytes, "activation_max_output_bytes", "most of a function's output an activation record keeps; the rest is cut and the record marked truncated"),
		settings.Size(&c.ActivationMaxMessageBytes, "activation_max_message_bytes", "most of an error message an activation record keeps"),
		settings.Int(&c.ActivationMaxLogLines, "activation_max_log_lines", "most log lines an activation record keeps, whatever its agent sent; the rest is dropped, the record marked truncated and a marker line added (1 to 10000)"),
		settings.Size(&c.ActivationMaxLogBytes, "activation_max_log_bytes", "most bytes of log text an activation record keeps (1 byte to 1 MiB)"),
		settings.Duration(&c.ActivationRetention, "activation_retention", "remove activation records older than this; 0 keeps them whatever their age"),
		settings.Int(&c.ActivationMaxCount, "activation_max_count", "keep at most the newest `N` activation records in all; 0: no bound"),
		settings.Int(&c.ActivationMaxPerFunction, "activation_max_per_function", "keep at most the newest `N` activation records of each function; 0: no bound"),
		settings.Duration(&c.ActivationPruneInterval, "activation_prune_interval", "time between two removals of the activation records out of those bounds; one runs at start"),
		settings.String(&c.SecretsKeyFile, "secrets_key_file", "`file` of the key (32 bytes, or their base64) sealing module secrets at rest; made 0600 with a random key when missing; WISP_SECRETS_KEY (base64) gives the key instead").WithDefault("<data-dir>/secrets.key"),
		settings.List(&c.SecretsOldKeyFiles, "secrets_old_key_files", "key `files` of earlier secrets keys, only to read values not yet sealed again ('wisp-controller secrets rotate-key'); WISP_SECRETS_OLD_KEYS gives them as comma-separated base64"),
	}, c.Log.Settings()...)}
}

// loadConfig is the configuration: the defaults, then the config file, the
// environment and the flags set on fs (see settings.Table.Load), checked.
func loadConfig(fs *pflag.FlagSet, env settings.LookupEnv, warn io.Writer) (config, error) {
	cfg := defaults()
	if err := cfg.table().Load(fs, env, warn); err != nil {
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
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both or neither"))
	}
	if c.TLS == "off" && c.TLSCert != "" {
		errs = append(errs, errors.New("--tls off with --tls-cert: choose plain HTTP or TLS"))
	}
	if c.MaxUploadBytes <= 0 || c.MaxUploadBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max upload bytes %d: want 1 byte to 1 GiB", c.MaxUploadBytes))
	}
	if c.MaxInputBytes <= 0 || c.MaxInputBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("max input bytes %d: want 1 byte to 64 MiB", c.MaxInputBytes))
	}
	if c.OTLPEndpoint != "" {
		if u, err := url.Parse(c.OTLPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("OTLP endpoint %q: want http://host:port or https://host:port", c.OTLPEndpoint))
		}
	}
	if c.CrashHold < 0 {
		errs = append(errs, fmt.Errorf("crash hold %s: want 0 (off) or more", c.CrashHold))
	}
	if c.FunctionVersions < 1 || c.FunctionVersions > api.MaxFunctionVersions {
		errs = append(errs, fmt.Errorf("function versions %d: want 1 to %d", c.FunctionVersions, api.MaxFunctionVersions))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout %s: want more than 0", c.ShutdownTimeout))
	}
	if _, err := runtime.ParseModuleLimits(c.ModuleLimits); err != nil {
		errs = append(errs, err)
	}
	if len(c.DefaultAllowHosts) > fnspec.MaxAllowHosts {
		errs = append(errs, fmt.Errorf("default allow hosts: %d patterns; at most %d", len(c.DefaultAllowHosts), fnspec.MaxAllowHosts))
	}
	for _, h := range c.DefaultAllowHosts {
		if err := fnspec.CheckHostPattern(h); err != nil {
			errs = append(errs, fmt.Errorf("default allow hosts: %q: %w", h, err))
		}
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
	if c.ActivationMaxLogLines <= 0 || c.ActivationMaxLogLines > maxActivationLogLines {
		errs = append(errs, fmt.Errorf("activation max log lines %d: want 1 to %d", c.ActivationMaxLogLines, maxActivationLogLines))
	}
	if c.ActivationMaxLogBytes <= 0 || c.ActivationMaxLogBytes > maxActivationLogBytes {
		errs = append(errs, fmt.Errorf("activation max log bytes %d: want 1 byte to 1 MiB", c.ActivationMaxLogBytes))
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
	return errors.Join(errs...)
}

// Upper bounds of the activation record bounds: an agent's output is 1 MiB
// by default, so 64 MiB already means "keep every output whole".
const (
	maxActivationOutputBytes  = 64 << 20
	maxActivationMessageBytes = 1 << 20
	maxActivationLogLines     = 10_000
	maxActivationLogBytes     = 1 << 20
)
