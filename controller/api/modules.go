package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/jsonerr"
)

type nameItem struct {
	Name string `json:"name"`
}

type moduleInfo struct {
	Name      string     `json:"name"`
	Functions []nameItem `json:"functions"`
}

// decodeJSONBody decodes a JSON request body into v. An empty body is
// refused unless allowEmpty; the content type must be JSON when given.
func decodeJSONBody(c *fiber.Ctx, v any, allowEmpty bool) (empty bool, err error) {
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return true, nil
		}
		return true, fail(ErrBadRequest, "The request body is empty; send a JSON object")
	}
	if ct := c.Get(fiber.HeaderContentType); ct != "" && !isJSONType(ct) {
		return false, fail(ErrBadRequest, "Content-Type %q is not supported; send application/json", ct)
	}
	if len(body) > maxJSONBody {
		return false, fail(ErrTooLarge, "The JSON body is over %d bytes", maxJSONBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return false, fail(ErrBadRequest, "Invalid JSON body: %s", jsonerr.Reason(err))
	}
	// Exactly one value: anything after it but white space is refused,
	// including closing brackets that Decoder.More would not see.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return false, fail(ErrBadRequest, "Invalid JSON body: unexpected data after the JSON value")
	}
	return false, nil
}

func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// moduleBody is {"module":{"name":"m"}}.
type moduleBody struct {
	Module *struct {
		Name *string `json:"name"`
	} `json:"module"`
}

func (b moduleBody) name() (string, error) {
	if b.Module == nil || b.Module.Name == nil {
		return "", fail(ErrBadRequest, `Missing module name: send {"module":{"name":"..."}}`)
	}
	return *b.Module.Name, checkName("module", *b.Module.Name)
}

func (s *Server) listModules(c *fiber.Ctx) error {
	mods, err := s.store.ListModules(c.UserContext())
	if err != nil {
		return err
	}
	subj := caller(c)
	out := []nameItem{}
	for _, m := range mods {
		if sees(subj, m.Owner) {
			out = append(out, nameItem{m.Name})
		}
	}
	return c.JSON(dataBody[[]nameItem]{out})
}

func (s *Server) createModule(c *fiber.Ctx) error {
	var body moduleBody
	if _, err := decodeJSONBody(c, &body, false); err != nil {
		return err
	}
	name, err := body.name()
	if err != nil {
		return err
	}
	if err := s.store.CreateModule(c.UserContext(), name, ownerFor(caller(c))); err != nil {
		if errors.Is(err, store.ErrExists) {
			return failCause(store.ErrExists, err, "Module %s already exists", name)
		}
		return ownerGone(err)
	}
	s.log.Info("module created", "module", name)
	return c.Status(http.StatusCreated).JSON(dataBody[nameItem]{nameItem{name}})
}

// pathName reads and checks a name from the path.
func pathName(c *fiber.Ctx, param, what string) (string, error) {
	name := c.Params(param)
	return name, checkName(what, name)
}

func notFound(what, name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return failCause(store.ErrNotFound, err, "%s %s not found", what, name)
	}
	return err
}

func (s *Server) getModule(c *fiber.Ctx) error {
	name, err := pathName(c, "mod", "module")
	if err != nil {
		return err
	}
	m, err := s.store.GetModule(c.UserContext(), name)
	if err == nil && !sees(caller(c), m.Owner) {
		err = store.ErrNotFound
	}
	if err != nil {
		return notFound("Module", name, err)
	}
	fns := make([]nameItem, len(m.Functions))
	for i, f := range m.Functions {
		fns[i] = nameItem{f}
	}
	return c.JSON(dataBody[moduleInfo]{moduleInfo{Name: m.Name, Functions: fns}})
}

func (s *Server) renameModule(c *fiber.Ctx) error {
	from, err := pathName(c, "mod", "module")
	if err != nil {
		return err
	}
	var body moduleBody
	if _, err := decodeJSONBody(c, &body, false); err != nil {
		return err
	}
	to, err := body.name()
	if err != nil {
		return err
	}
	if err := s.ownModule(c, from); err != nil {
		return notFound("Module", from, err)
	}
	if from != to {
		if err := s.renameRefused(c.UserContext(), from); err != nil {
			return err
		}
	}
	err = s.store.RenameModule(c.UserContext(), from, to)
	switch {
	case errors.Is(err, store.ErrDefaultModule):
		return failCause(store.ErrDefaultModule, err, "Cannot rename the default module, nor rename a module to it")
	case errors.Is(err, store.ErrExists):
		return failCause(store.ErrExists, err, "Module %s already exists", to)
	case err != nil:
		return notFound("Module", from, err)
	}
	s.log.Info("module renamed", "module", to, "from", from)
	s.changed(c.UserContext())
	return c.JSON(dataBody[nameItem]{nameItem{to}})
}

func (s *Server) deleteModule(c *fiber.Ctx) error {
	name, err := pathName(c, "mod", "module")
	if err != nil {
		return err
	}
	if err := s.ownModule(c, name); err != nil {
		return notFound("Module", name, err)
	}
	var digests []string
	if s.dist != nil {
		if fns, lerr := s.store.ListFunctions(c.UserContext()); lerr == nil {
			for _, f := range fns {
				if f.Module == name {
					digests = append(digests, f.Digest)
				}
			}
		}
	}
	err = s.store.DeleteModule(c.UserContext(), name)
	if errors.Is(err, store.ErrDefaultModule) {
		return failCause(store.ErrDefaultModule, err, "Cannot delete default module")
	}
	if err != nil {
		return notFound("Module", name, err)
	}
	if s.secrets != nil {
		s.secrets.Forget(name)
	}
	s.log.Info("module deleted", "module", name)
	s.removed(c.UserContext(), digests...)
	s.changed(c.UserContext())
	return c.SendStatus(http.StatusNoContent)
}
