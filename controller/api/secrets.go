package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/controller/store"
)

// Secrets keeps module-scoped secrets (controller/secrets.Service).
type Secrets interface {
	Put(ctx context.Context, module, name string, value []byte) (secrets.Info, error)
	List(ctx context.Context, module string) ([]secrets.Info, error)
	Delete(ctx context.Context, module, name string) error
	CheckRefs(ctx context.Context, module string, names []string) error
	// Forget drops what is cached of a deleted module's secrets.
	Forget(module string)
}

// maxSecretBody bounds PUT /v1/secrets/{module}/{name}: the value's bound
// written with JSON escapes (\u00XX is 6 bytes a byte), and the framing.
const maxSecretBody = 6*secrets.MaxValueBytes + 1024

type secretInfo struct {
	Name    string    `json:"name"`
	Updated time.Time `json:"updated"`
}

// secretsFor checks the service is there and the caller owns module
// (another's is not found, as a missing one).
func (s *Server) secretsFor(c *fiber.Ctx) (string, error) {
	if s.secrets == nil {
		return "", fail(ErrBusy, "This controller keeps no secrets")
	}
	module, err := pathName(c, "mod", "module")
	if err != nil {
		return "", err
	}
	if err := s.ownModule(c, module); err != nil {
		return "", notFound("Module", module, err)
	}
	return module, nil
}

func secretName(c *fiber.Ctx) (string, error) {
	name := c.Params("name")
	if err := secrets.CheckName(name); err != nil {
		return "", failCause(ErrBadRequest, err, "Invalid secret name %q: want letters, digits and _ (not first a digit), at most %d bytes", name, secrets.MaxNameBytes)
	}
	return name, nil
}

// putSecret answers PUT /v1/secrets/{module}/{name} with {"value":"..."}.
// The value is never logged nor answered.
func (s *Server) putSecret(c *fiber.Ctx) error {
	module, err := s.secretsFor(c)
	if err != nil {
		return err
	}
	name, err := secretName(c)
	if err != nil {
		return err
	}
	if len(c.Body()) > maxSecretBody {
		return fail(ErrTooLarge, "The request body is over %d bytes", maxSecretBody)
	}
	var fields map[string]json.RawMessage
	if _, err := decodeJSONBody(c, &fields, false); err != nil {
		// The JSON parser's reason may quote a character of the value:
		// this answer (and the debug log) names none.
		if _, detail := statusOf(err); strings.HasPrefix(detail, "Invalid JSON body") {
			return fail(ErrBadRequest, `Invalid JSON body: send {"value":"..."}`)
		}
		return err
	}
	var body struct {
		Value *string
	}
	for k, v := range fields {
		if k != "value" {
			return fail(ErrBadRequest, `Invalid JSON body: unknown field %q; send {"value":"..."}`, k)
		}
		if err := json.Unmarshal(v, &body.Value); err != nil || body.Value == nil {
			return fail(ErrBadRequest, "Invalid JSON body: value must be a string")
		}
	}
	if body.Value == nil {
		return fail(ErrBadRequest, `Missing the value: send {"value":"..."}`)
	}
	info, err := s.secrets.Put(c.UserContext(), module, name, []byte(*body.Value))
	switch {
	case errors.Is(err, secrets.ErrInvalid) && len(*body.Value) > secrets.MaxValueBytes:
		return fail(ErrTooLarge, "The secret's value is %d bytes; the limit is %d", len(*body.Value), secrets.MaxValueBytes)
	case errors.Is(err, secrets.ErrInvalid):
		return fail(ErrBadRequest, "Invalid secret value: it holds a NUL byte")
	case errors.Is(err, secrets.ErrTooMany):
		return fail(ErrConflict, "Module %s holds %d secrets, the limit", module, secrets.MaxPerModule)
	case err != nil:
		return notFound("Module", module, err)
	}
	s.log.Info("secret set", "module", module, "secret", name)
	s.changed(c.UserContext()) // agents hold the functions' values in their desired sets
	return c.JSON(dataBody[secretInfo]{secretInfo{Name: info.Name, Updated: info.Updated}})
}

// listSecrets answers GET /v1/secrets/{module}: names and times only.
func (s *Server) listSecrets(c *fiber.Ctx) error {
	module, err := s.secretsFor(c)
	if err != nil {
		return err
	}
	infos, err := s.secrets.List(c.UserContext(), module)
	if err != nil {
		return notFound("Module", module, err)
	}
	out := make([]secretInfo, len(infos))
	for i, x := range infos {
		out[i] = secretInfo{Name: x.Name, Updated: x.Updated}
	}
	return c.JSON(dataBody[[]secretInfo]{out})
}

// deleteSecret answers DELETE /v1/secrets/{module}/{name}: 409 naming the
// functions whose configuration still names it.
func (s *Server) deleteSecret(c *fiber.Ctx) error {
	module, err := s.secretsFor(c)
	if err != nil {
		return err
	}
	name, err := secretName(c)
	if err != nil {
		return err
	}
	fns, err := s.store.ListFunctions(c.UserContext())
	if err != nil {
		return err
	}
	if users := secrets.UsedBy(fns, module, name); len(users) > 0 {
		return fail(ErrConflict, "Secret %s is used by function(s) %s of module %s: remove it from their config first", name, strings.Join(users, ", "), module)
	}
	err = s.secrets.Delete(c.UserContext(), module, name)
	if errors.Is(err, store.ErrNotFound) {
		if _, merr := s.secrets.List(c.UserContext(), module); merr != nil {
			return notFound("Module", module, merr)
		}
		return failCause(store.ErrNotFound, err, "Secret %s not found in module %s", name, module)
	}
	if err != nil {
		return err
	}
	s.log.Info("secret deleted", "module", module, "secret", name)
	s.changed(c.UserContext())
	return c.SendStatus(http.StatusNoContent)
}

// checkSecretRefs is the check a function create or update makes of its
// config's secrets (fnspec.Config.Secrets): 400 naming those the module
// does not hold, before anything is changed. Without a secrets service a
// config naming any secret is refused the same way.
//
// createFunction and updateFunction call it after the owner check, before
// the store is written.
func (s *Server) checkSecretRefs(ctx context.Context, module string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if s.secrets == nil {
		return fail(ErrBadRequest, "Invalid config: this controller keeps no secrets (config names %s)", strings.Join(names, ", "))
	}
	err := s.secrets.CheckRefs(ctx, module, names)
	var miss *secrets.MissingError
	if errors.As(err, &miss) {
		return fail(ErrBadRequest, "Invalid config: module %s has no secret %s (set it with wisp secret set %s NAME)", module, strings.Join(miss.Names, ", "), module)
	}
	return err
}

// renameRefused is the check renameModule makes: a module with secrets is
// not renamed, since each value is sealed for its module's name.
func (s *Server) renameRefused(ctx context.Context, module string) error {
	if s.secrets == nil {
		return nil
	}
	have, err := s.secrets.List(ctx, module)
	if err != nil || len(have) == 0 {
		return nil // the rename reports a missing module itself
	}
	return fail(ErrConflict, "Module %s has %d secret(s), sealed for its name: delete them before renaming it, then set them again", module, len(have))
}
