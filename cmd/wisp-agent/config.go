package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
)

// config is the agent's whole configuration, one flat struct. Sources, each
// overriding the one before: defaults, the --config file, WISP_*
// environment variables, flags.
//
// The config file uses the environment's names, one KEY=value per line
// (# comments, blank lines ignored), so one vocabulary covers systemd
// EnvironmentFile=, Docker env files and the file.
type config struct {
	Controllers  []string // WISP_CONTROLLERS, comma-separated host:port
	JoinToken    string   // WISP_JOIN_TOKEN
	DataDir      string   // WISP_DATA_DIR
	Name         string   // WISP_AGENT_NAME
	Labels       []string // WISP_LABELS, comma-separated key=value
	Engine       string   // WISP_ENGINE
	MetricsAddr  string   // WISP_METRICS_ADDR
	LocalAPI     string   // WISP_LOCAL_API: address of the local invoke API ("" disables)
	LocalAPISync bool     // WISP_LOCAL_API_SYNC: answer local API calls only after the outbox fsync
	MQTTBroker   string   // WISP_MQTT_BROKER: the box's broker for edge-local triggers ("" disables)
	Timeout      time.Duration
	MemoryMiB    uint64
	// ModuleLimits (WISP_MODULE_LIMITS) is "key=value,..." over
	// runtime.DefaultModuleLimits; the compile budget is
	// WISP_COMPILE_TIMEOUT, WISP_COMPILE_MEMORY_MIB, WISP_COMPILE_WORKERS.
	ModuleLimits     string
	CompileTimeout   time.Duration
	CompileMemoryMiB uint64
	CompileWorkers   int
	MaxConcurrent    int // WISP_MAX_CONCURRENT: instances at once (0: 8 × GOMAXPROCS)
	// WISP_MAX_PER_FUNCTION: instances of one function at once (0: GOMAXPROCS-1, at least 1)
	MaxPerFunction int
	// WISP_MAX_QUEUED_PER_FUNCTION: calls of one function waiting for an
	// instance before more are refused as overloaded (0: 256)
	MaxQueuedPerFunction int
}

func defaultConfig() config {
	return config{
		DataDir:      "wisp-agent-data",
		Engine:       runtime.EngineAuto,
		MetricsAddr:  "127.0.0.1:9464",
		LocalAPI:     "127.0.0.1:4080",
		LocalAPISync: true,
		MQTTBroker:   "tcp://127.0.0.1:1883",
		Timeout:      runtime.DefaultLimits.Timeout,
		MemoryMiB:    runtime.DefaultLimits.MemoryBytes >> 20,
	}
}

// envKeys maps each setting to its environment variable.
var envKeys = []string{"WISP_CONTROLLERS", "WISP_JOIN_TOKEN", "WISP_DATA_DIR", "WISP_AGENT_NAME", "WISP_LABELS",
	"WISP_ENGINE", "WISP_METRICS_ADDR", "WISP_LOCAL_API", "WISP_LOCAL_API_SYNC", "WISP_MQTT_BROKER", "WISP_TIMEOUT", "WISP_MEMORY_MIB", "WISP_MAX_CONCURRENT",
	"WISP_MODULE_LIMITS", "WISP_COMPILE_TIMEOUT", "WISP_COMPILE_MEMORY_MIB", "WISP_COMPILE_WORKERS",
	"WISP_MAX_PER_FUNCTION", "WISP_MAX_QUEUED_PER_FUNCTION"}

func (c *config) set(key, v string) error {
	var err error
	switch key {
	case "WISP_CONTROLLERS":
		c.Controllers = splitList(v)
	case "WISP_JOIN_TOKEN":
		c.JoinToken = v
	case "WISP_DATA_DIR":
		c.DataDir = v
	case "WISP_AGENT_NAME":
		c.Name = v
	case "WISP_LABELS":
		c.Labels = splitList(v)
	case "WISP_ENGINE":
		c.Engine = v
	case "WISP_METRICS_ADDR":
		c.MetricsAddr = v
	case "WISP_LOCAL_API":
		c.LocalAPI = v
	case "WISP_LOCAL_API_SYNC":
		c.LocalAPISync, err = strconv.ParseBool(v)
	case "WISP_MQTT_BROKER":
		c.MQTTBroker = v
	case "WISP_TIMEOUT":
		c.Timeout, err = time.ParseDuration(v)
	case "WISP_MEMORY_MIB":
		c.MemoryMiB, err = strconv.ParseUint(v, 10, 64)
	case "WISP_MAX_CONCURRENT":
		c.MaxConcurrent, err = strconv.Atoi(v)
	case "WISP_MODULE_LIMITS":
		_, err = runtime.ParseModuleLimits(v)
		c.ModuleLimits = v
	case "WISP_COMPILE_TIMEOUT":
		c.CompileTimeout, err = time.ParseDuration(v)
	case "WISP_COMPILE_MEMORY_MIB":
		c.CompileMemoryMiB, err = strconv.ParseUint(v, 10, 64)
	case "WISP_COMPILE_WORKERS":
		c.CompileWorkers, err = strconv.Atoi(v)
	case "WISP_MAX_PER_FUNCTION":
		c.MaxPerFunction, err = strconv.Atoi(v)
	case "WISP_MAX_QUEUED_PER_FUNCTION":
		c.MaxQueuedPerFunction, err = strconv.Atoi(v)
	default:
		return fmt.Errorf("unknown setting %s", key)
	}
	if err != nil {
		return fmt.Errorf("%s=%q: %v", key, v, err)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// loadConfig applies file, environment and flags over the defaults.
func loadConfig(args []string, getenv func(string) string, fs *flag.FlagSet) (config, error) {
	c := defaultConfig()
	path := fs.String("config", getenv("WISP_CONFIG"), "config file of KEY=value lines (env WISP_CONFIG)")
	byFlag := map[string]string{} // flag name -> env key
	for _, k := range envKeys {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "WISP_"), "_", "-"))
		byFlag[name] = k
		fs.String(name, "", "overrides "+k)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *path != "" {
		if err := c.loadFile(*path); err != nil {
			return c, err
		}
	}
	for _, k := range envKeys {
		if v := getenv(k); v != "" {
			if err := c.set(k, v); err != nil {
				return c, err
			}
		}
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		if k, ok := byFlag[f.Name]; ok && ferr == nil {
			ferr = c.set(k, f.Value.String())
		}
	})
	if ferr != nil {
		return c, ferr
	}
	return c, c.Validate()
}

func (c *config) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want KEY=value", path, n)
		}
		if err := c.set(strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)); err != nil {
			return fmt.Errorf("%s:%d: %v", path, n, err)
		}
	}
	return sc.Err()
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
	if c.Timeout <= 0 {
		return errors.New("timeout must be positive")
	}
	return runtime.Config{Engine: c.Engine, MaxConcurrent: c.MaxConcurrent,
		MaxPerFunction: c.MaxPerFunction, MaxQueuedPerFunction: c.MaxQueuedPerFunction}.Validate()
}
