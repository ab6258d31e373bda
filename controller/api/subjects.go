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
