package fleet

import (
	"context"
	"slices"
	"sort"

	"github.com/wispfn/wisp/controller/fnspec"
)

// What a function's config (fnspec.Config) becomes on the wire: the
// environment "NAME=value" entries, sorted by name, and the egress
// allowlist (the function's own, or Config.DefaultAllowHosts).

// allowHosts is the allowlist a function's invocations get: its own
// allow_hosts, or the controller's default when it sets none (empty: every
// host is denied).
func (f *Fleet) allowHosts(c fnspec.Config) []string {
	if len(c.AllowHosts) > 0 {
		return c.AllowHosts
	}
	return f.cfg.DefaultAllowHosts
}

// configEnv is a config's env as "NAME=value" entries sorted by name: what
// the desired set carries (no secrets there: DesiredFunction.Secrets).
func configEnv(c fnspec.Config) []string {
	if len(c.Env) == 0 {
		return nil
	}
	env := make([]string, 0, len(c.Env))
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env) // names hold no '=': sorting the entries sorts the names
	return env
}

// invokeEnv is the environment an Invoke carries for a function of module
// with config c: its env, then the values of the secrets it names. It is
// the one place the guest's environment is assembled for
// controller-dispatched calls (the agent's edge paths use
// state.DesiredEnv, in the same order). Errors are invoke errors (Failed,
// 500) naming a missing or unreadable secret, never a value.
func (f *Fleet) invokeEnv(ctx context.Context, module string, c fnspec.Config) ([]string, error) {
	env := configEnv(c)
	vals, err := f.secretValues(ctx, module, c.Secrets)
	if err != nil {
		return nil, err
	}
	for _, v := range vals {
		env = append(env, v.Name+"="+string(v.Value))
	}
	return slices.Clip(env), nil
}
