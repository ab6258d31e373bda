package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/protocol"
)

// Quarantine keeps the code no agent may run: digests that were running
// when an agent died, and digests held for a short while after an agent
// was lost running them, until it says whether it crashed. The fleet
// implements it; nil answers 503 on the admin routes.
type Quarantine interface {
	// ListQuarantine returns every quarantined or held digest, sorted by
	// digest.
	ListQuarantine(ctx context.Context) ([]QuarantineInfo, error)
	// ReleaseQuarantine ends a digest's quarantine or hold and tells the
	// agents. store.ErrNotFound when it has neither.
	ReleaseQuarantine(ctx context.Context, digest string) error
}

// QuarantineInfo is one digest of GET /v1/admin/quarantine.
type QuarantineInfo struct {
	Digest string `json:"digest"`
	// State is "quarantined" (until an operator releases it) or "held"
	// (until the lost agent reconnects, or Until).
	State  string `json:"state"`
	Reason string `json:"reason"`
	// Agent is the id of the agent that died (or was lost) running it, and
	// AgentName its name when the controller knows it.
	Agent     string     `json:"agent"`
	AgentName string     `json:"agent_name"`
	Since     time.Time  `json:"since"`
	Until     *time.Time `json:"until,omitempty"`
	// Functions are the functions ("module/name") whose code it is; the API
	// fills them in.
	Functions []string `json:"functions"`
}

// Quarantine states.
const (
	QuarantineStateQuarantined = "quarantined"
	QuarantineStateHeld        = "held"
)

// listQuarantine is GET /v1/admin/quarantine.
func (s *Server) listQuarantine(c *fiber.Ctx) error {
	if s.quarantine == nil {
		return fail(ErrNoWorker, "This controller runs no agents")
	}
	qs, err := s.quarantine.ListQuarantine(c.UserContext())
	if err != nil {
		return err
	}
	fns, err := s.store.ListFunctions(c.UserContext())
	if err != nil {
		return err
	}
	byDigest := map[string][]string{}
	for _, fn := range fns {
		byDigest[fn.Digest] = append(byDigest[fn.Digest], fn.Module+"/"+fn.Name)
	}
	for i := range qs {
		qs[i].Functions = append([]string{}, byDigest[qs[i].Digest]...)
	}
	if qs == nil {
		qs = []QuarantineInfo{}
	}
	return c.JSON(dataBody[[]QuarantineInfo]{qs})
}

// releaseQuarantine is DELETE /v1/admin/quarantine/{digest}.
func (s *Server) releaseQuarantine(c *fiber.Ctx) error {
	digest := c.Params("digest")
	if !protocol.IsDigest(digest) {
		return fail(ErrBadRequest, "Invalid digest: want sha256:<64 lowercase hex digits>")
	}
	if s.quarantine == nil {
		return fail(ErrNoWorker, "This controller runs no agents")
	}
	if err := s.quarantine.ReleaseQuarantine(c.UserContext(), digest); err != nil {
		return notFound("Quarantined code", digest, err)
	}
	s.log.Info("quarantine released", "digest", digest)
	return c.SendStatus(http.StatusNoContent)
}
