package fnspec

import (
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Config is what a function is given to run with (issue 14): its
// environment, the names of the module's secrets it reads, and the hosts
// __http_request may reach. Its JSON is
// {"env":{"K":"V"},"secrets":["name",...],"allow_hosts":["host","host:port","*.example.com"]}.
// The secrets' values are never part of a Config: only their names.
type Config struct {
	Env     map[string]string `json:"env,omitempty"`
	Secrets []string          `json:"secrets,omitempty"`
	// AllowHosts is the function's egress allowlist (patterns checked by
	// CheckHostPattern, lowercased); nil: the controller's default.
	AllowHosts []string `json:"allow_hosts,omitempty"`
}

// Bounds of a Config.
const (
	MaxEnvVars      = 64
	MaxEnvValue     = 4 << 10
	MaxEnvBytes     = 32 << 10
	MaxSecretRefs   = 32
	MaxAllowHosts   = 64
	maxHostPattern  = 253 + 1 + 5
	maxVariableName = 128
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// IsZero reports whether c configures nothing.
func (c Config) IsZero() bool {
	return len(c.Env) == 0 && len(c.Secrets) == 0 && len(c.AllowHosts) == 0
}

// ParseConfig parses a config field. Empty means none (zero Config).
//
// env names are environment variable names ([A-Za-z_][A-Za-z0-9_]*, at most
// 128 bytes), at most 64 of them, each value at most 4 KiB without NUL,
// 32 KiB in all. secrets are at most 32 distinct names of the same form
// (each becomes an environment variable of that name holding the secret's
// value), none also in env. allow_hosts are at most 64 patterns (see
// CheckHostPattern); a function without any gets the controller's default
// allowlist, which is empty (deny every host) unless the operator sets one.
//
// # Errors
//
// An *Error (wrapping ErrInvalid) naming the bad key or value.
func ParseConfig(raw []byte) (Config, error) {
	if absent(raw) {
		return Config{}, nil
	}
	var in *struct {
		Env        map[string]string `json:"env"`
		Secrets    []string          `json:"secrets"`
		AllowHosts []string          `json:"allow_hosts"`
	}
	if err := strictUnmarshal("config", raw, &in); err != nil {
		return Config{}, err
	}
	if in == nil {
		return Config{}, invalid("config", "want an object")
	}
	c := Config{Env: in.Env, Secrets: in.Secrets, AllowHosts: in.AllowHosts}
	if len(c.Env) > MaxEnvVars {
		return Config{}, invalid("config", "env has %d variables; at most %d", len(c.Env), MaxEnvVars)
	}
	total := 0
	for k, v := range c.Env {
		if err := checkVariableName("env", k); err != nil {
			return Config{}, err
		}
		if len(v) > MaxEnvValue {
			return Config{}, invalid("config", "env %s: value of %d bytes; at most %d", k, len(v), MaxEnvValue)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Config{}, invalid("config", "env %s: the value holds a NUL byte", k)
		}
		total += len(k) + len(v) + 2
	}
	if total > MaxEnvBytes {
		return Config{}, invalid("config", "env takes %d bytes; at most %d", total, MaxEnvBytes)
	}
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Secrets) > MaxSecretRefs {
		return Config{}, invalid("config", "%d secrets; at most %d", len(c.Secrets), MaxSecretRefs)
	}
	for i, s := range c.Secrets {
		if err := checkVariableName("secret", s); err != nil {
			return Config{}, err
		}
		if slices.Contains(c.Secrets[:i], s) {
			return Config{}, invalid("config", "secret %q is named twice", s)
		}
		if _, ok := c.Env[s]; ok {
			return Config{}, invalid("config", "%q is both in env and in secrets", s)
		}
	}
	if len(c.Secrets) == 0 {
		c.Secrets = nil
	}
	if len(c.AllowHosts) > MaxAllowHosts {
		return Config{}, invalid("config", "%d allow_hosts; at most %d", len(c.AllowHosts), MaxAllowHosts)
	}
	for i, h := range c.AllowHosts {
		if err := CheckHostPattern(h); err != nil {
			return Config{}, invalid("config", "allow_hosts[%d] %q: %v", i, h, err)
		}
		c.AllowHosts[i] = strings.ToLower(h)
	}
	if len(c.AllowHosts) == 0 {
		c.AllowHosts = nil
	}
	return c, nil
}

func checkVariableName(what, name string) error {
	if len(name) > maxVariableName || !envName.MatchString(name) {
		return invalid("config", "%s name %q: want letters, digits and _ (not first a digit), at most %d bytes", what, name, maxVariableName)
	}
	return nil
}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckHostPattern checks one allowlist entry: "*" (any host), a host
// name, an IP address ("[::1]" for IPv6), "*.example.com" (any name under
// example.com, not example.com itself), each optionally with ":port"
// (then only that port; without one, any port).
func CheckHostPattern(p string) error {
	if p == "*" {
		return nil
	}
	if p == "" || len(p) > maxHostPattern {
		return errString("want a host name, an IP address or *.domain, optionally with :port")
	}
	host := strings.ToLower(p)
	if h, port, err := net.SplitHostPort(host); err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 {
			return errString("port " + strconv.Quote(port) + " is not 1 to 65535")
		}
		host = h
	} else if strings.HasPrefix(host, "[") {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	name, wildcard := strings.CutPrefix(host, "*.")
	labels := strings.Split(name, ".")
	if wildcard && len(labels) < 2 {
		return errString("a wildcard needs a domain of two labels or more (*.example.com)")
	}
	for _, l := range labels {
		if !hostLabel.MatchString(l) {
			return errString("label " + strconv.Quote(l) + " is not a host name label")
		}
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }
