package api

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/store"
)

// Who sees what (docs/controller-api.md, "Subjects own modules"): a
// subject sees and changes only the modules it created, their functions,
// the activations recorded for them and the APP scripts it created; the
// admin sees everything. What a subject may not see answers exactly as if
// it did not exist (404 with the same detail), so that names do not leak.
// The default module "_" is the admin's.

// caller is the subject authenticate found.
func caller(c *fiber.Ctx) store.Subject {
	subj, _ := c.Locals(subjectKey).(store.Subject)
	return subj
}

// ownerFor is the Owner of what subj creates: "" (the admin) for an admin.
func ownerFor(subj store.Subject) string {
	if subj.Admin {
		return ""
	}
	return subj.Name
}

// sees reports whether subj may see and change what owner owns.
func sees(subj store.Subject, owner string) bool {
	return subj.Admin || owner == subj.Name
}

// ownModule checks that the caller may use module: store.ErrNotFound when
// the module does not exist or is another's, which the handler reports as
// it reports a missing module. An admin skips the look-up.
func (s *Server) ownModule(c *fiber.Ctx, module string) error {
	subj := caller(c)
	if subj.Admin {
		return nil
	}
	owner, err := s.store.ModuleOwner(c.UserContext(), module)
	if err != nil {
		return err
	}
	if owner != subj.Name {
		return store.ErrNotFound
	}
	return nil
}

// ownerGone reports a create refused because its owner, the caller, was
// deleted after it authenticated (store.ErrNotFound) as the refusal of
// its token.
func ownerGone(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return failCause(ErrUnauthorized, err, "Missing or invalid token")
	}
	return err
}

// ownScript finds the APP script name if the caller may use it; another's
// is not found.
func (s *Server) ownScript(c *fiber.Ctx, name string) (store.Script, error) {
	sc, err := s.store.GetScript(c.UserContext(), name)
	if err == nil && !sees(caller(c), sc.Owner) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Script{}, notFound("Script", name, err)
	}
	return sc, nil
}
