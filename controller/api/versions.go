package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

const (
	// DefaultFunctionVersions is how many versions of each function the
	// controller keeps by default, the current one included.
	DefaultFunctionVersions = 10
	// MaxFunctionVersions bounds Config.FunctionVersions.
	MaxFunctionVersions = 1000
)

// afterUpdate is what follows a function's update in the store (an upload
// or a rollback): the code goes to the agents, versions beyond the bound
// go, the code nothing uses any more is dropped from the agents, and the
// desired sets follow.
func (s *Server) afterUpdate(ctx context.Context, prev, fn store.Function, code []byte, wait bool) {
	s.stored(ctx, fn, code, wait)
	gone := []string{prev.Digest}
	removed, err := s.store.PruneFunctionVersions(ctx, fn.Module, fn.Name, s.versions)
	if err != nil {
		// The next update prunes them: the bound is soft until then.
		s.log.Warn("removing old versions", "module", fn.Module, "function", fn.Name, "err", err)
	}
	if len(removed) > 0 {
		s.log.Info("old versions removed", "module", fn.Module, "function", fn.Name, "versions", len(removed))
	}
	s.removed(ctx, append(gone, removed...)...)
	s.changed(ctx)
}

// versionInfo is one element of GET /v1/fn/{mod}/{fn}/versions: a kept
// version with a summary of its settings (counts and names; values of env
// are not listed, secrets never have any here).
type versionInfo struct {
	Version  int64           `json:"version"`
	Current  bool            `json:"current"`
	Digest   string          `json:"digest"`
	Size     int64           `json:"size"`
	ABI      string          `json:"abi"`
	Created  time.Time       `json:"created"`
	Settings settingsSummary `json:"settings"`
}

type settingsSummary struct {
	Events     int             `json:"events"`
	Sinks      int             `json:"sinks"`
	Metadata   fnspec.Metadata `json:"metadata"`
	Env        []string        `json:"env"`
	Secrets    []string        `json:"secrets"`
	AllowHosts []string        `json:"allow_hosts"`
	// Unreadable is set when the version's stored settings do not parse:
	// it cannot be rolled back to.
	Unreadable bool `json:"unreadable,omitempty"`
}

func summarize(v store.FunctionVersion) settingsSummary {
	c := v.Spec.Config
	return settingsSummary{
		Events: len(v.Spec.Events), Sinks: len(v.Spec.Sinks), Metadata: v.Spec.Metadata,
		Env: orEmpty(slices.Sorted(maps.Keys(c.Env))), Secrets: orEmpty(c.Secrets), AllowHosts: orEmpty(c.AllowHosts),
		Unreadable: v.Unreadable != nil,
	}
}

// functionVersions finds the kept versions of the path's function, newest
// first, if the caller may use its module.
func (s *Server) functionVersions(c *fiber.Ctx) (module, name string, vs []store.FunctionVersion, err error) {
	if module, name, err = functionPath(c); err != nil {
		return "", "", nil, err
	}
	if err := s.ownModule(c, module); err != nil {
		return "", "", nil, notFound("Function", module+"/"+name, err)
	}
	vs, err = s.store.FunctionVersions(c.UserContext(), module, name)
	if err != nil {
		return "", "", nil, notFound("Function", module+"/"+name, err)
	}
	return module, name, vs, nil
}

// listVersions is GET /v1/fn/{mod}/{fn}/versions: the kept versions,
// newest (the current one) first.
func (s *Server) listVersions(c *fiber.Ctx) error {
	_, _, vs, err := s.functionVersions(c)
	if err != nil {
		return err
	}
	out := make([]versionInfo, len(vs))
	for i, v := range vs {
		out[i] = versionInfo{Version: v.Number, Current: i == 0, Digest: v.Digest, Size: v.Size, ABI: v.ABI,
			Created: v.Created, Settings: summarize(v)}
	}
	return c.JSON(dataBody[[]versionInfo]{out})
}

// rollbackBody is POST .../rollback's optional {"to": N}.
type rollbackBody struct {
	To json.RawMessage `json:"to"`
}

// rollbackResult is the answer to a rollback.
type rollbackResult struct {
	Name string `json:"name"`
	// Version is the new version the rollback made; From is the version
	// whose code and settings it took.
	Version int64  `json:"version"`
	From    int64  `json:"from"`
	Digest  string `json:"digest"`
}

// parseRollback reads the optional body: {} or none for the previous
// version, {"to": N} for version N (a whole number from 1).
func parseRollback(c *fiber.Ctx) (to int64, err error) {
	var raw map[string]json.RawMessage
	empty, err := decodeJSONBody(c, &raw, true)
	if err != nil || empty {
		return 0, err
	}
	if raw == nil {
		return 0, fail(ErrBadRequest, "Invalid rollback: want a JSON object such as {\"to\": 3}")
	}
	for k := range raw {
		if k != "to" {
			return 0, fail(ErrBadRequest, "Invalid rollback: unknown key %q (want only \"to\")", k)
		}
	}
	v, ok := raw["to"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 1 {
		return 0, fail(ErrBadRequest, "Invalid rollback: to is %s; want a version number (a whole number from 1)", v)
	}
	return n, nil
}

// rollback is POST /v1/fn/{mod}/{fn}/rollback: the function takes the code
// and settings of an earlier kept version (the previous one, or {"to": N}),
// as a new version, so a rollback can itself be rolled back. Agents that
// hold the old code (they keep the code of kept versions) need no
// transfer.
func (s *Server) rollback(c *fiber.Ctx) error {
	module, name, err := functionPath(c)
	if err != nil {
		return err
	}
	to, err := parseRollback(c)
	if err != nil {
		return err
	}
	_, _, vs, err := s.functionVersions(c)
	if err != nil {
		return err
	}
	cur := vs[0]
	var target store.FunctionVersion
	switch {
	case to == 0 && len(vs) < 2:
		return fail(store.ErrNotFound, "Function %s/%s has no earlier version to roll back to", module, name)
	case to == 0:
		target = vs[1]
	case to == cur.Number:
		return fail(ErrBadRequest, "Version %d is the current version of %s/%s", to, module, name)
	default:
		i := slices.IndexFunc(vs, func(v store.FunctionVersion) bool { return v.Number == to })
		if i < 0 {
			return fail(store.ErrNotFound, "Version %d of %s/%s is not kept (kept: %s)", to, module, name, keptRange(vs))
		}
		target = vs[i]
	}
	if target.Unreadable != nil {
		return failCause(store.ErrExists, target.Unreadable, "Version %d of %s/%s has unreadable stored settings; it cannot be rolled back to", target.Number, module, name)
	}
	ctx := c.UserContext()
	code, err := s.store.Code(ctx, target.Digest)
	if errors.Is(err, store.ErrNotFound) { // pruned meanwhile
		return failCause(store.ErrNotFound, err, "Version %d of %s/%s is no longer kept", target.Number, module, name)
	}
	if err != nil {
		return fmt.Errorf("api: code of version %d of %s/%s: %w", target.Number, module, name, err)
	}
	fn := store.Function{Module: module, Name: name, Digest: target.Digest, ABI: target.ABI, Spec: target.Spec}
	prev, err := s.store.UpdateFunction(ctx, fn, code)
	if err != nil {
		return notFound("Function", module+"/"+name, err)
	}
	s.log.Info("function rolled back", "module", module, "function", name, "from_version", cur.Number, "to_version", target.Number, "digest", fn.Digest)
	s.afterUpdate(ctx, prev, fn, code, false)
	res := rollbackResult{Name: name, From: target.Number, Digest: fn.Digest}
	if now, err := s.store.FunctionVersions(ctx, module, name); err == nil && len(now) > 0 {
		res.Version = now[0].Number
	}
	if partial, failed := s.connect(ctx, fn); failed {
		return c.Status(fiber.StatusMultiStatus).JSON(dataBody[partialBody]{partial})
	}
	return c.JSON(dataBody[rollbackResult]{res})
}

// keptRange names the kept version numbers, as "3-12" or "4".
func keptRange(vs []store.FunctionVersion) string {
	lo, hi := vs[len(vs)-1].Number, vs[0].Number
	if lo == hi {
		return strconv.FormatInt(lo, 10)
	}
	return strconv.FormatInt(lo, 10) + "-" + strconv.FormatInt(hi, 10)
}
