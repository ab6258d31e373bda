package api

import (
	"context"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/protocol"
)

// Quarantine keeps the code no agent may run: digests that were running
// when an agent died, and digests held for a short while after an agent
// was lost running them, until it says whether it crashed. The fleet
// implements it; nil answers 503 on the admin routes.
type Quarantine interface {
	// ListQuarantine returns every quarantined or held digest, sorted by
	// digest.
	ListQuarantine(ctx context.Context) ([]fleet.QuarantineInfo, error)
	// ReleaseQuarantine ends a digest's quarantine or hold and tells the
	// agents. store.ErrNotFound when it has neither.
	ReleaseQuarantine(ctx context.Context, digest string) error
}

// listQuarantine is GET /v1/admin/quarantine.
func (s *Server) listQuarantine(c *fiber.Ctx) error {
	if s.quarantine == nil {
		return fail(invoke.ErrNoWorker, "This controller runs no agents")
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
		qs = []fleet.QuarantineInfo{}
	}
	return c.JSON(dataBody[[]fleet.QuarantineInfo]{qs})
}

// releaseQuarantine is DELETE /v1/admin/quarantine/{digest}.
func (s *Server) releaseQuarantine(c *fiber.Ctx) error {
	digest := c.Params("digest")
	if !protocol.IsDigest(digest) {
		return fail(ErrBadRequest, "Invalid digest: want sha256:<64 lowercase hex digits>")
	}
	if s.quarantine == nil {
		return fail(invoke.ErrNoWorker, "This controller runs no agents")
	}
	if err := s.quarantine.ReleaseQuarantine(c.UserContext(), digest); err != nil {
		return notFound("Quarantined code", digest, err)
	}
	s.log.Info("quarantine released", "digest", digest)
	return c.SendStatus(http.StatusNoContent)
}
