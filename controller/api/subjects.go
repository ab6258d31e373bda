package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/store"
)

type subjectInfo struct {
	Name    string    `json:"name"`
	Admin   bool      `json:"admin"`
	Created time.Time `json:"created"`
}

// newSubject is the only response that ever carries a token.
type newSubject struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

func (s *Server) listSubjects(c *fiber.Ctx) error {
	subjects, err := s.store.ListSubjects(c.UserContext())
	if err != nil {
		return err
	}
	out := make([]subjectInfo, len(subjects))
	for i, sub := range subjects {
		out[i] = subjectInfo{Name: sub.Name, Admin: sub.Admin, Created: sub.Created}
	}
	return c.JSON(dataBody[[]subjectInfo]{out})
}

func (s *Server) createSubject(c *fiber.Ctx) error {
	var body struct {
		Subject *struct {
			Name *string `json:"name"`
		} `json:"subject"`
	}
	if _, err := decodeJSONBody(c, &body, false); err != nil {
		return err
	}
	if body.Subject == nil || body.Subject.Name == nil {
		return fail(ErrBadRequest, `Missing subject name: send {"subject":{"name":"..."}}`)
	}
	name := *body.Subject.Name
	if err := checkName("subject", name); err != nil {
		return err
	}
	subj, token := auth.NewSubject(name, false)
	if _, err := s.store.CreateSubject(c.UserContext(), subj); err != nil {
		if errors.Is(err, store.ErrExists) {
			return failCause(store.ErrExists, err, "Subject %s already exists", name)
		}
		return err
	}
	s.log.Info("subject created", "subject", name)
	return c.Status(http.StatusCreated).JSON(dataBody[newSubject]{newSubject{Name: name, Token: token}})
}

// subjectToChange finds the subject of the path for a delete or a rotate.
// It refuses an admin: deleting the last one would lock everyone out, and
// its token is re-issued with wisp-controller admin-token rotate, which
// works with the controller stopped.
func (s *Server) subjectToChange(c *fiber.Ctx) (store.Subject, error) {
	name, err := pathName(c, "name", "subject")
	if err != nil {
		return store.Subject{}, err
	}
	subjects, err := s.store.ListSubjects(c.UserContext())
	if err != nil {
		return store.Subject{}, err
	}
	for _, sub := range subjects {
		if sub.Name != name {
			continue
		}
		if sub.Admin {
			return store.Subject{}, fail(ErrBadRequest, "Subject %s is an admin: admins are not deleted or rotated here (use wisp-controller admin-token rotate)", name)
		}
		return sub, nil
	}
	return store.Subject{}, fail(store.ErrNotFound, "Subject %s not found", name)
}

// deleteSubject is DELETE /v1/admin/subjects/{name}: its token stops
// working and its APP scripts go; refused (409) while it owns modules; its
// activations pass to the admin.
func (s *Server) deleteSubject(c *fiber.Ctx) error {
	sub, err := s.subjectToChange(c)
	if err != nil {
		return err
	}
	err = s.store.DeleteSubject(c.UserContext(), sub.Name)
	switch {
	case errors.Is(err, store.ErrOwner):
		return failCause(store.ErrOwner, err, "Subject %s owns modules; delete them first", sub.Name)
	case err != nil:
		return notFound("Subject", sub.Name, err)
	}
	s.log.Info("subject deleted", "subject", sub.Name)
	s.changed(c.UserContext()) // its scripts went, and scripts can decide which agents hold a function
	return c.SendStatus(http.StatusNoContent)
}

// rotateSubject is POST /v1/admin/subjects/{name}/rotate: a new token, shown
// once; the old one stops working.
func (s *Server) rotateSubject(c *fiber.Ctx) error {
	sub, err := s.subjectToChange(c)
	if err != nil {
		return err
	}
	token := auth.NewToken()
	if err := s.store.RotateSubjectToken(c.UserContext(), sub.Name, auth.Hash(token)); err != nil {
		return notFound("Subject", sub.Name, err)
	}
	s.log.Info("subject token rotated", "subject", sub.Name)
	return c.JSON(dataBody[newSubject]{newSubject{Name: sub.Name, Token: token}})
}
