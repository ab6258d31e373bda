package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
)

// AgentControl is the operator's control of agents (admin routes under
// /v1/admin/agents/{id}): remove, cordon, drain, labels, memory cap. The
// fleet implements it (its control.go says what each does); nil answers
// 503.
type AgentControl interface {
	// AgentControl returns what operators set on the agent.
	AgentControl(ctx context.Context, id string) (fleet.ControlState, error)
	// Control changes what operators set on the agent.
	Control(ctx context.Context, id string, change func(*store.AgentControl)) (fleet.ControlState, error)
	// Drain cordons the agent and waits, at most wait, until nothing runs
	// there.
	Drain(ctx context.Context, id string, wait time.Duration) (fleet.ControlState, error)
	// Remove deletes the agent and its credential and disconnects it.
	Remove(ctx context.Context, id string) error
}

// Bounds of the agent control routes.
const (
	// MaxDrainWait bounds one drain request's wait (the server's write
	// timeout is 60 s); `wisp agent drain` repeats it until done.
	MaxDrainWait = 30 * time.Second
	// maxOperatorLabels and maxLabelLen bound an agent's operator labels.
	maxOperatorLabels = 64
	maxLabelLen       = 256
)

func (s *Server) agentRoutes(v1 fiber.Router) {
	v1.Get("/admin/agents/:id", s.requireAdmin, s.agentControl)
	v1.Delete("/admin/agents/:id", s.requireAdmin, s.removeAgent)
	v1.Put("/admin/agents/:id/cordon", s.requireAdmin, s.cordonAgent(true))
	v1.Delete("/admin/agents/:id/cordon", s.requireAdmin, s.cordonAgent(false))
	v1.Post("/admin/agents/:id/drain", s.requireAdmin, s.drainAgent)
	v1.Post("/admin/agents/:id/labels", s.requireAdmin, s.labelAgent)
	v1.Put("/admin/agents/:id/cap", s.requireAdmin, s.capAgent)
}

// controlledAgent checks the route's agent id and that agents are
// controlled here.
func (s *Server) controlledAgent(c *fiber.Ctx) (string, error) {
	id := c.Params("id")
	if !validAgentID(id) {
		return "", fail(ErrBadRequest, "Invalid agent id %q: want ag_ and hex digits", id)
	}
	if s.control == nil {
		return "", fail(invoke.ErrNoWorker, "This controller runs no agents")
	}
	return id, nil
}

func validAgentID(id string) bool {
	hex, ok := strings.CutPrefix(id, "ag_")
	return ok && hex != "" && len(hex) <= 64 && strings.Trim(hex, "0123456789abcdef") == ""
}

// controlAnswer answers with an agent's control state, or 404 for an
// unknown agent.
func controlAnswer(c *fiber.Ctx, id string, st fleet.ControlState, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return failCause(store.ErrNotFound, err, "Agent %s not found", id)
	}
	if err != nil {
		return fmt.Errorf("api: agent %s: %w", id, err)
	}
	if st.Labels == nil {
		st.Labels = []string{}
	}
	return c.JSON(dataBody[fleet.ControlState]{st})
}

// agentControl is GET /v1/admin/agents/{id}.
func (s *Server) agentControl(c *fiber.Ctx) error {
	id, err := s.controlledAgent(c)
	if err != nil {
		return err
	}
	st, err := s.control.AgentControl(c.UserContext(), id)
	return controlAnswer(c, id, st, err)
}

// removeAgent is DELETE /v1/admin/agents/{id}.
func (s *Server) removeAgent(c *fiber.Ctx) error {
	id, err := s.controlledAgent(c)
	if err != nil {
		return err
	}
	if err := s.control.Remove(c.UserContext(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return failCause(store.ErrNotFound, err, "Agent %s not found", id)
		}
		return fmt.Errorf("api: remove agent %s: %w", id, err)
	}
	s.log.Info("agent removed", "agent", id)
	return c.SendStatus(http.StatusNoContent)
}

// cordonAgent is PUT (cordon) and DELETE (uncordon) /v1/admin/agents/{id}/cordon.
func (s *Server) cordonAgent(cordoned bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, err := s.controlledAgent(c)
		if err != nil {
			return err
		}
		st, err := s.control.Control(c.UserContext(), id, func(ac *store.AgentControl) { ac.Cordoned = cordoned })
		return controlAnswer(c, id, st, err)
	}
}

// drainAgent is POST /v1/admin/agents/{id}/drain[?wait=30s]: cordon, then
// wait until nothing runs there or wait passed; in_flight says which.
func (s *Server) drainAgent(c *fiber.Ctx) error {
	id, err := s.controlledAgent(c)
	if err != nil {
		return err
	}
	wait := MaxDrainWait
	if w := c.Query("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 || d > MaxDrainWait {
			return fail(ErrBadRequest, "Invalid wait %q: want a duration from 0s to %v", w, MaxDrainWait)
		}
		wait = d
	}
	st, err := s.control.Drain(c.UserContext(), id, wait)
	return controlAnswer(c, id, st, err)
}

// labelsBody is POST /v1/admin/agents/{id}/labels's body: labels to set
// ("key=value", each replacing the operator's label of that key) and keys
// whose operator label goes (the agent's own label of that key, if any,
// applies again).
type labelsBody struct {
	Set    []string `json:"set,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// labelAgent is POST /v1/admin/agents/{id}/labels.
func (s *Server) labelAgent(c *fiber.Ctx) error {
	id, err := s.controlledAgent(c)
	if err != nil {
		return err
	}
	var body labelsBody
	if _, err := decodeJSONBody(c, &body, false); err != nil {
		return err
	}
	for _, l := range body.Set {
		k, _, ok := strings.Cut(l, "=")
		if !ok || !validLabelPart(k) || !validLabelPart(l) {
			return fail(ErrBadRequest, "Invalid label %q: want key=value, at most %d printable bytes without spaces", l, maxLabelLen)
		}
	}
	for _, k := range body.Remove {
		if strings.Contains(k, "=") || !validLabelPart(k) {
			return fail(ErrBadRequest, "Invalid label key %q to remove: want a key without =", k)
		}
	}
	tooMany := false
	st, err := s.control.Control(c.UserContext(), id, func(ac *store.AgentControl) {
		labels := slices.DeleteFunc(ac.Labels, func(l string) bool {
			k, _, _ := strings.Cut(l, "=")
			return slices.Contains(body.Remove, k) || slices.ContainsFunc(body.Set, func(n string) bool {
				nk, _, _ := strings.Cut(n, "=")
				return nk == k
			})
		})
		for _, l := range body.Set {
			k, _, _ := strings.Cut(l, "=")
			// A key set twice in one request: the last wins.
			labels = slices.DeleteFunc(labels, func(o string) bool { ok, _, _ := strings.Cut(o, "="); return ok == k })
			labels = append(labels, l)
		}
		if len(labels) > maxOperatorLabels {
			tooMany = true
			return
		}
		ac.Labels = labels
	})
	if tooMany {
		return fail(ErrBadRequest, "An agent has at most %d operator labels", maxOperatorLabels)
	}
	return controlAnswer(c, id, st, err)
}

func validLabelPart(s string) bool {
	if s == "" || len(s) > maxLabelLen {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// capBody is PUT /v1/admin/agents/{id}/cap's body; 0 removes the cap.
type capBody struct {
	MemCapBytes *uint64 `json:"mem_cap_bytes"`
}

// capAgent is PUT /v1/admin/agents/{id}/cap.
func (s *Server) capAgent(c *fiber.Ctx) error {
	id, err := s.controlledAgent(c)
	if err != nil {
		return err
	}
	var body capBody
	if _, err := decodeJSONBody(c, &body, false); err != nil {
		return err
	}
	if body.MemCapBytes == nil {
		return fail(ErrBadRequest, "Missing mem_cap_bytes (0 removes the cap)")
	}
	st, err := s.control.Control(c.UserContext(), id, func(ac *store.AgentControl) { ac.MemCapBytes = *body.MemCapBytes })
	return controlAnswer(c, id, st, err)
}
