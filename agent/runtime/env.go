package runtime

import (
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
)

// Bounds of Request.Env: a function's config allows 64 variables of 32 KiB
// in all and 32 secrets; these leave room for the secrets' values and stop
// a hostile or corrupt request from making the guest's environment
// arbitrarily large (wazero copies it into every instance).
const (
	MaxEnvVars  = 128
	MaxEnvBytes = 128 << 10
)

// checkEnv validates a request's environment: at most MaxEnvVars entries
// of "NAME=value", MaxEnvBytes in all, names of letters, digits and _ (not
// first a digit), no NUL byte anywhere, no name twice.
func checkEnv(env []string) error {
	if len(env) > MaxEnvVars {
		return fmt.Errorf("%d environment variables; at most %d", len(env), MaxEnvVars)
	}
	total := 0
	seen := make(map[string]bool, len(env))
	for _, kv := range env {
		total += len(kv) + 1
		if total > MaxEnvBytes {
			return fmt.Errorf("the environment exceeds %d bytes", MaxEnvBytes)
		}
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !envNameOK(name) {
			return fmt.Errorf("environment entry %.40q: want NAME=value with a name of letters, digits and _", kv)
		}
		if strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("environment variable %s holds a NUL byte", name)
		}
		if seen[name] {
			return fmt.Errorf("environment variable %s is set twice", name)
		}
		seen[name] = true
	}
	return nil
}

func envNameOK(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		switch {
		case b == '_', b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z':
		case b >= '0' && b <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// withEnv sets a checked environment on an instance's configuration.
func withEnv(cfg wazero.ModuleConfig, env []string) wazero.ModuleConfig {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	return cfg
}
