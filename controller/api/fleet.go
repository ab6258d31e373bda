package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
)

// Distributor moves code to agents ahead of invocations (FunLess "store on
// create") and tells them to forget code no function uses any more. The
// fleet implements it; nil means no distribution (agents pull code on their
// first invocation).
type Distributor interface {
	// Stored is called after a function was created or updated. With wait
	// (the client's wait_for_workers), the request waits for the pushes.
	Stored(ctx context.Context, fn store.Function, code []byte, wait bool)
	// Removed is called with digests that no function refers to any more.
	Removed(ctx context.Context, digests []string)
	// Changed is called after every change of the set of functions (create,
	// update, delete, module rename or delete), after Stored or Removed.
	Changed(ctx context.Context)
}

// Connector connects a function's events and sinks when it is created or
// updated, so the answer can say which failed (FunLess's 207). The
// returned slices have one element per event and per sink, nil for a
// success. The distributor may implement it.
type Connector interface {
	Connect(ctx context.Context, fn store.Function) (events, sinks []error)
}

// connectStatus is one event's or sink's entry of a 207 answer.
type connectStatus struct {
	Status  string `json:"status"` // "success" or "error"
	Message string `json:"message,omitempty"`
}

type connectCounts struct {
	Successful int `json:"successful"`
	Failed     int `json:"failed"`
	Total      int `json:"total"`
}

// partialBody is FunLess's 207 answer.
type partialBody struct {
	Name           string          `json:"name"`
	Events         []connectStatus `json:"events"`
	EventsMetadata connectCounts   `json:"events_metadata"`
	Sinks          []connectStatus `json:"sinks"`
	SinksMetadata  connectCounts   `json:"sinks_metadata"`
}

// connect runs the Connector and reports whether anything failed, with
// FunLess's 207 body.
func (s *Server) connect(ctx context.Context, fn store.Function) (partialBody, bool) {
	c, ok := s.dist.(Connector)
	if !ok || (len(fn.Spec.Events) == 0 && len(fn.Spec.Sinks) == 0) {
		return partialBody{}, false
	}
	evErrs, sinkErrs := c.Connect(ctx, fn)
	body := partialBody{Name: fn.Name, Events: []connectStatus{}, Sinks: []connectStatus{}}
	failed := false
	fill := func(errs []error, out *[]connectStatus, n *connectCounts) {
		for _, err := range errs {
			n.Total++
			if err != nil {
				failed = true
				n.Failed++
				*out = append(*out, connectStatus{Status: "error", Message: err.Error()})
				continue
			}
			n.Successful++
			*out = append(*out, connectStatus{Status: "success"})
		}
	}
	fill(evErrs, &body.Events, &body.EventsMetadata)
	fill(sinkErrs, &body.Sinks, &body.SinksMetadata)
	return body, failed
}

// AgentLister lists the agents for GET /v1/agents. The fleet implements it.
type AgentLister interface {
	Agents() []fleet.AgentInfo
}

// JoinTokens makes join tokens for new agents (POST /v1/admin/tokens). The
// fleet implements it; nil answers 503.
type JoinTokens interface {
	CreateJoinToken(ctx context.Context, ttl time.Duration) (fleet.JoinTokenInfo, error)
}

// createToken is POST /v1/admin/tokens with an optional {"ttl":"24h"}.
func (s *Server) createToken(c *fiber.Ctx) error {
	var body struct {
		TTL string `json:"ttl"`
	}
	if _, err := decodeJSONBody(c, &body, true); err != nil {
		return err
	}
	var ttl time.Duration
	if body.TTL != "" {
		d, err := time.ParseDuration(body.TTL)
		if err != nil || d <= 0 {
			return fail(ErrBadRequest, "ttl %q: want a positive duration such as 24h", body.TTL)
		}
		ttl = d
	}
	if s.tokens == nil {
		return fail(invoke.ErrNoWorker, "This controller does not accept agents")
	}
	info, err := s.tokens.CreateJoinToken(c.UserContext(), ttl)
	if err != nil {
		return fmt.Errorf("api: create join token: %w", err)
	}
	s.log.Info("join token created", "id", info.ID, "expires", info.Expires)
	return c.Status(http.StatusCreated).JSON(dataBody[fleet.JoinTokenInfo]{info})
}

func (s *Server) listAgents(c *fiber.Ctx) error {
	agents := []fleet.AgentInfo{}
	if s.agents != nil {
		agents = s.agents.Agents()
	}
	return c.JSON(dataBody[[]fleet.AgentInfo]{agents})
}

// stored hands a created or updated function to the distributor.
func (s *Server) stored(ctx context.Context, fn store.Function, code []byte, wait bool) {
	if s.dist == nil {
		return
	}
	if wait {
		s.dist.Stored(ctx, fn, code, true)
		return
	}
	s.bg.Go(func(ctx context.Context) { s.dist.Stored(ctx, fn, code, false) })
}

// changed tells the distributor that the set of functions changed.
func (s *Server) changed(ctx context.Context) {
	if s.dist != nil {
		s.bg.Go(func(ctx context.Context) { s.dist.Changed(ctx) })
	}
}

// unreferenced returns the digests among ds whose code the store dropped
// (no function uses them any more), and tells the distributor.
func (s *Server) removed(ctx context.Context, ds ...string) {
	if s.dist == nil {
		return
	}
	var gone []string
	seen := map[string]bool{}
	for _, d := range ds {
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		if _, err := s.store.Code(ctx, d); errors.Is(err, store.ErrNotFound) {
			gone = append(gone, d)
		}
	}
	if len(gone) > 0 {
		s.dist.Removed(context.WithoutCancel(ctx), gone)
	}
}
