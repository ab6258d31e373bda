package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
)

type scriptInfo struct {
	Name    string    `json:"name"`
	Source  string    `json:"source"`
	Created time.Time `json:"created"`
}

func (s *Server) listScripts(c *fiber.Ctx) error {
	scripts, err := s.store.ListScripts(c.UserContext())
	if err != nil {
		return err
	}
	subj := caller(c)
	out := []nameItem{}
	for _, sc := range scripts {
		if sees(subj, sc.Owner) {
			out = append(out, nameItem{sc.Name})
		}
	}
	return c.JSON(dataBody[[]nameItem]{out})
}

// createScript takes multipart name + file (the YAML); the file may also
// come as a text field, as curl -F file=<x.yaml sends it.
func (s *Server) createScript(c *fiber.Ctx) error {
	form, err := c.MultipartForm()
	if errors.Is(err, fasthttp.ErrNoMultipartForm) {
		return fail(ErrBadRequest, "Content-Type must be multipart/form-data with a name field and a file")
	}
	if err != nil {
		return failCause(ErrBadRequest, err, "Malformed multipart body")
	}
	defer form.RemoveAll()
	var name string
	if v := form.Value["name"]; len(v) > 0 {
		name = v[0]
	} else {
		return fail(ErrBadRequest, "Missing the script name: send a name field")
	}
	if err := checkName("script", name); err != nil {
		return err
	}
	var src []byte
	switch {
	case len(form.File["file"]) > 0:
		fh := form.File["file"][0]
		if fh.Size > scheduler.MaxScriptBytes {
			return fail(ErrTooLarge, "The script is %d bytes; the limit is %d", fh.Size, scheduler.MaxScriptBytes)
		}
		f, err := fh.Open()
		if err != nil {
			return fmt.Errorf("api: open script part: %w", err)
		}
		src, err = io.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("api: read script part: %w", err)
		}
	case len(form.Value["file"]) > 0:
		src = []byte(form.Value["file"][0])
	default:
		return fail(ErrBadRequest, "Missing the script: send the YAML as a file part named file")
	}
	if _, err := scheduler.ParseAPP(src); err != nil {
		return failCause(ErrBadRequest, err, "%s", err.Error())
	}
	sc, err := s.store.PutScript(c.UserContext(), store.Script{Name: name, Source: src, Owner: ownerFor(caller(c))})
	if errors.Is(err, store.ErrExists) {
		return failCause(store.ErrExists, err, "Script %s already exists", name)
	}
	if err != nil {
		return ownerGone(err)
	}
	s.changed(c.UserContext()) // scripts can decide which agents hold a function
	s.log.Info("APP script created", "script", sc.Name)
	return c.Status(http.StatusCreated).JSON(dataBody[nameItem]{nameItem{sc.Name}})
}

func (s *Server) getScript(c *fiber.Ctx) error {
	name, err := pathName(c, "name", "script")
	if err != nil {
		return err
	}
	sc, err := s.ownScript(c, name)
	if err != nil {
		return err
	}
	return c.JSON(dataBody[scriptInfo]{scriptInfo{Name: sc.Name, Source: string(sc.Source), Created: sc.Created}})
}
