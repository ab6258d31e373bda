package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// AgentLister lists the agents for GET /v1/agents: every agent of the
// cluster, with the controllers each is connected to. The fleet
// implements it.
type AgentLister interface {
	Agents(ctx context.Context) ([]fleet.AgentInfo, error)
}

// JoinTokens makes join tokens for new agents (POST /v1/admin/tokens). The
// fleet implements it; nil answers 503.
type JoinTokens interface {
	CreateJoinToken(ctx context.Context, ttl time.Duration, uses int) (fleet.JoinTokenInfo, error)
}

// createToken is POST /v1/admin/tokens with an optional
// {"ttl":"24h","uses":1}; a token lets one agent join by default.
func (s *Server) createToken(c *fiber.Ctx) error {
	var body struct {
		TTL  string `json:"ttl"`
		Uses *int   `json:"uses"`
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
	uses := 1
	if body.Uses != nil {
		if *body.Uses < 1 || *body.Uses > fleet.MaxJoinTokenUses {
			return fail(ErrBadRequest, "uses %d: want 1 to %d", *body.Uses, fleet.MaxJoinTokenUses)
		}
		uses = *body.Uses
	}
	if s.tokens == nil {
		return fail(invoke.ErrNoWorker, "This controller does not accept agents")
	}
	info, err := s.tokens.CreateJoinToken(c.UserContext(), ttl, uses)
	if err != nil {
		return fmt.Errorf("api: create join token: %w", err)
	}
	s.log.Info("join token created", "id", info.ID, "expires", info.Expires, "uses", info.Uses)
	return c.Status(http.StatusCreated).JSON(dataBody[fleet.JoinTokenInfo]{info})
}

func (s *Server) listAgents(c *fiber.Ctx) error {
	agents := []fleet.AgentInfo{}
	if s.agents != nil {
		var err error
		if agents, err = s.agents.Agents(c.UserContext()); err != nil {
			return fmt.Errorf("api: list agents: %w", err)
		}
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

// JoinTokenState is a join token as GET /v1/admin/tokens lists it: never
// its secret.
type JoinTokenState struct {
	ID      string     `json:"id"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	// Uses is how many agents may join with it; 0: no limit (a token made
	// before tokens were counted).
	Uses int `json:"uses"`
	Used int `json:"used"`
	// State is "active", "expired" or "used".
	State string `json:"state"`
}

// listTokens is GET /v1/admin/tokens: every join token, expired and
// used-up ones included, oldest first.
func (s *Server) listTokens(c *fiber.Ctx) error {
	jts, err := s.store.ListJoinTokens(c.UserContext())
	if err != nil {
		return fmt.Errorf("api: list join tokens: %w", err)
	}
	now := time.Now()
	out := make([]JoinTokenState, 0, len(jts))
	for _, jt := range jts {
		st := JoinTokenState{ID: jt.ID, Created: jt.Created, Uses: jt.Uses, Used: jt.Used, State: "active"}
		if !jt.Expires.IsZero() {
			e := jt.Expires
			st.Expires = &e
			if !e.After(now) {
				st.State = "expired"
			}
		}
		if jt.UsedUp() {
			st.State = "used"
		}
		out = append(out, st)
	}
	return c.JSON(dataBody[[]JoinTokenState]{out})
}

// revokeToken is DELETE /v1/admin/tokens/{id}: no agent joins with it
// any more; agents that joined with it keep their own credentials.
func (s *Server) revokeToken(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validTokenID(id) {
		return fail(ErrBadRequest, "Invalid join token id %q: want jt_ and hex digits", id)
	}
	if err := s.store.DeleteJoinToken(c.UserContext(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return failCause(store.ErrNotFound, err, "Join token %s not found", id)
		}
		return fmt.Errorf("api: delete join token: %w", err)
	}
	s.log.Info("join token revoked", "id", id)
	return c.SendStatus(http.StatusNoContent)
}

func validTokenID(id string) bool {
	hex, ok := strings.CutPrefix(id, "jt_")
	if !ok || hex == "" || len(hex) > 64 {
		return false
	}
	for _, r := range hex {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
