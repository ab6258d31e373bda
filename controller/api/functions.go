package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/tracing"
)

// upload is a validated function create or update request.
type upload struct {
	fn             store.Function
	code           []byte
	waitForWorkers bool
}

// readUpload parses and validates the multipart body of a function create
// or update, including the code (with the runtime's Inspector: static
// limits, then a budgeted compilation). It touches no
// store. pathFn is the function name of the path ("" on create).
func (s *Server) readUpload(c *fiber.Ctx, module, pathFn string) (upload, error) {
	form, err := c.MultipartForm()
	if errors.Is(err, fasthttp.ErrNoMultipartForm) {
		return upload{}, fail(ErrBadRequest, "Content-Type must be multipart/form-data with a name field and a code file")
	}
	if err != nil {
		return upload{}, failCause(ErrBadRequest, err, "Malformed multipart body")
	}
	defer form.RemoveAll()
	field := func(name string) (string, bool) {
		if v := form.Value[name]; len(v) > 0 {
			return v[0], true
		}
		return "", false
	}

	name, hasName := field("name")
	switch {
	case pathFn == "" && !hasName:
		return upload{}, fail(ErrBadRequest, "Missing the function name: send a name field")
	case pathFn != "" && !hasName:
		name = pathFn
	case pathFn != "" && name != pathFn:
		return upload{}, fail(ErrBadRequest, "The name field (%q) differs from the function in the path (%q); functions cannot be renamed", name, pathFn)
	}
	if err := checkName("function", name); err != nil {
		return upload{}, err
	}

	u := upload{fn: store.Function{Module: module, Name: name}}
	if u.fn.Spec, err = parseSpec(field); err != nil {
		return upload{}, err
	}
	wait, _ := field("wait_for_workers")
	if u.waitForWorkers, err = parseBool("wait_for_workers", wait); err != nil {
		return upload{}, err
	}

	files := form.File["code"]
	if len(files) == 0 {
		if _, ok := field("code"); ok {
			return upload{}, fail(ErrBadRequest, "The code must be sent as a file part (with a filename), not as a text field")
		}
		return upload{}, fail(ErrBadRequest, "Missing the code: send the .wasm as a file part named code")
	}
	if u.code, err = s.readCode(files[0]); err != nil {
		return upload{}, err
	}
	info, err := s.inspect.Inspect(c.UserContext(), u.code)
	if err != nil {
		return upload{}, badCode(err)
	}
	u.fn.Digest, u.fn.ABI = info.Digest, info.ABI.String()
	return u, nil
}

// parseSpec parses the function's settings from their form fields, with
// fnspec (the one parser of events, sinks, metadata and config); an absent
// or empty field means none.
func parseSpec(field func(string) (string, bool)) (fnspec.Spec, error) {
	var spec fnspec.Spec
	var err error
	events, _ := field("events")
	if spec.Events, err = fnspec.ParseEvents([]byte(events)); err != nil {
		return spec, badSetting(err)
	}
	sinks, _ := field("sinks")
	if spec.Sinks, err = fnspec.ParseSinks([]byte(sinks)); err != nil {
		return spec, badSetting(err)
	}
	metadata, _ := field("metadata")
	if spec.Metadata, err = fnspec.ParseMetadata([]byte(metadata)); err != nil {
		return spec, badSetting(err)
	}
	config, _ := field("config")
	if spec.Config, err = fnspec.ParseConfig([]byte(config)); err != nil {
		return spec, badSetting(err)
	}
	return spec, nil
}

// badSetting is fnspec's refusal as a 400 with its text ("Invalid <field>:
// <reason>").
func badSetting(err error) error { return fail(ErrBadRequest, "%s", err.Error()) }

// readCode reads a code file part, refusing more than the upload limit.
func (s *Server) readCode(fh *multipart.FileHeader) ([]byte, error) {
	if fh.Size > s.maxCode {
		return nil, fail(ErrTooLarge, "The code is %d bytes; the limit is %d", fh.Size, s.maxCode)
	}
	f, err := fh.Open()
	if err != nil {
		return nil, fmt.Errorf("api: open code part: %w", err)
	}
	defer f.Close()
	code, err := io.ReadAll(io.LimitReader(f, s.maxCode+1))
	if err != nil {
		return nil, fmt.Errorf("api: read code part: %w", err)
	}
	if int64(len(code)) > s.maxCode {
		return nil, fail(ErrTooLarge, "The code is over the limit of %d bytes", s.maxCode)
	}
	return code, nil
}

// badCode turns the loader's verdict into a 400 naming its reason.
func badCode(err error) error {
	switch runtime.KindOf(err) {
	case runtime.KindNotWasm:
		return failCause(ErrBadRequest, err, "The code is not a wasm module: it does not start with \\0asm")
	case runtime.KindInvalidModule:
		return failCause(ErrBadRequest, err, "Invalid wasm module: %s", reason(err))
	case runtime.KindUnknownImport:
		return failCause(ErrBadRequest, err, "Unknown import %s", reason(err))
	case runtime.KindMissingExport:
		return failCause(ErrBadRequest, err, "Missing export: %s", reason(err))
	case runtime.KindModuleLimit:
		return failCause(ErrBadRequest, err, "The module exceeds a limit: %s", reason(err))
	case runtime.KindCompileBudget:
		return failCause(ErrBadRequest, err, "The module cannot be compiled within its budget: %s", reason(err))
	case runtime.KindOverloaded:
		return failCause(ErrBusy, err, "The controller is too busy to validate the module now; retry later (%s)", reason(err))
	}
	return fmt.Errorf("api: inspect code: %w", err)
}

func reason(err error) string {
	var rerr *runtime.Error
	if errors.As(err, &rerr) && rerr.Msg != "" {
		return rerr.Msg
	}
	return err.Error()
}

func (s *Server) createFunction(c *fiber.Ctx) error {
	module, err := pathName(c, "mod", "module")
	if err != nil {
		return err
	}
	u, err := s.readUpload(c, module, "")
	if err != nil {
		return err
	}
	if err := s.ownModule(c, module); err != nil {
		return notFound("Module", module, err)
	}
	if err := s.checkSecretRefs(c.UserContext(), module, u.fn.Spec.Config.Secrets); err != nil {
		return err
	}
	fn, err := s.store.CreateFunction(c.UserContext(), u.fn, u.code)
	switch {
	case errors.Is(err, store.ErrExists):
		return failCause(store.ErrExists, err, "Function %s already exists in module %s", u.fn.Name, module)
	case err != nil:
		return notFound("Module", module, err)
	}
	s.log.Info("function created", "module", fn.Module, "function", fn.Name, "digest", fn.Digest, "size", fn.Size, "abi", fn.ABI, "wait_for_workers", u.waitForWorkers)
	s.stored(c.UserContext(), fn, u.code, u.waitForWorkers)
	s.changed(c.UserContext())
	if partial, failed := s.connect(c.UserContext(), fn); failed {
		return c.Status(http.StatusMultiStatus).JSON(dataBody[partialBody]{partial})
	}
	return c.Status(http.StatusCreated).JSON(dataBody[nameItem]{nameItem{fn.Name}})
}

func (s *Server) updateFunction(c *fiber.Ctx) error {
	module, name, err := functionPath(c)
	if err != nil {
		return err
	}
	u, err := s.readUpload(c, module, name)
	if err != nil {
		return err
	}
	if err := s.ownModule(c, module); err != nil {
		return notFound("Function", module+"/"+name, err)
	}
	if err := s.checkSecretRefs(c.UserContext(), module, u.fn.Spec.Config.Secrets); err != nil {
		return err
	}
	prev, err := s.store.UpdateFunction(c.UserContext(), u.fn, u.code)
	if err != nil {
		return notFound("Function", module+"/"+name, err)
	}
	s.log.Info("function updated", "module", module, "function", name, "digest", u.fn.Digest, "abi", u.fn.ABI, "wait_for_workers", u.waitForWorkers)
	s.afterUpdate(c.UserContext(), prev, u.fn, u.code, u.waitForWorkers)
	if partial, failed := s.connect(c.UserContext(), u.fn); failed {
		return c.Status(http.StatusMultiStatus).JSON(dataBody[partialBody]{partial})
	}
	return c.JSON(dataBody[nameItem]{nameItem{name}})
}

// functionInfo is GET /v1/fn/{mod}/{fn}.
type functionInfo struct {
	Name     string          `json:"name"`
	Module   string          `json:"module"`
	Digest   string          `json:"digest"`
	Size     int64           `json:"size"`
	ABI      string          `json:"abi"`
	Events   []fnspec.Event  `json:"events"`
	Sinks    []fnspec.Sink   `json:"sinks"`
	Metadata fnspec.Metadata `json:"metadata"`
	Config   configInfo      `json:"config"`
	Created  time.Time       `json:"created"`
	Updated  time.Time       `json:"updated"`
	// SinkFailures lists deliveries to this function's sinks that failed
	// and are being retried (empty when every sink is keeping up).
	SinkFailures []sinkFailure `json:"sink_failures"`
}

// configInfo is a function's config as GET shows it: every key present
// (empty when unset), secrets by name only: their values never leave the
// controller through the REST API. No allow_hosts: the controller's
// default allowlist applies.
type configInfo struct {
	Env        map[string]string `json:"env"`
	Secrets    []string          `json:"secrets"`
	AllowHosts []string          `json:"allow_hosts"`
}

func showConfig(c fnspec.Config) configInfo {
	info := configInfo{Env: c.Env, Secrets: orEmpty(c.Secrets), AllowHosts: orEmpty(c.AllowHosts)}
	if info.Env == nil {
		info.Env = map[string]string{}
	}
	return info
}

type sinkFailure struct {
	Activation  string    `json:"activation"`
	Sink        int       `json:"sink"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error"`
	NextAttempt time.Time `json:"next_attempt"`
}

// maxSinkFailures bounds the failures GET /v1/fn/{mod}/{fn} shows.
const maxSinkFailures = 20

// functionPath returns the checked module and function names of a
// /v1/fn/{mod}/{fn} route.
func functionPath(c *fiber.Ctx) (module, name string, err error) {
	if module, err = pathName(c, "mod", "module"); err != nil {
		return "", "", err
	}
	name, err = pathName(c, "fn", "function")
	return module, name, err
}

// lookupFunction checks the path's names and finds the function, if the
// caller may use its module.
func (s *Server) lookupFunction(c *fiber.Ctx) (store.Function, error) {
	module, name, err := functionPath(c)
	if err != nil {
		return store.Function{}, err
	}
	if err := s.ownModule(c, module); err != nil {
		return store.Function{}, notFound("Function", module+"/"+name, err)
	}
	fn, err := s.store.GetFunction(c.UserContext(), module, name)
	if err != nil {
		return store.Function{}, notFound("Function", module+"/"+name, err)
	}
	return fn, nil
}

func (s *Server) getFunction(c *fiber.Ctx) error {
	fn, err := s.lookupFunction(c)
	if err != nil {
		return err
	}
	info := functionInfo{
		Name: fn.Name, Module: fn.Module, Digest: fn.Digest, Size: fn.Size, ABI: fn.ABI,
		Events: orEmpty(fn.Spec.Events), Sinks: redactSinks(fn.Spec.Sinks), Metadata: fn.Spec.Metadata,
		Config: showConfig(fn.Spec.Config), Created: fn.Created, Updated: fn.Updated, SinkFailures: []sinkFailure{},
	}
	if fn.Unreadable != nil {
		s.log.Warn("function with unreadable stored settings shown without them", "module", fn.Module, "function", fn.Name, "err", fn.Unreadable)
	}
	if len(fn.Spec.Sinks) > 0 {
		fails, err := s.store.SinkFailures(c.UserContext(), fn.Module, fn.Name)
		if err != nil {
			return err
		}
		for _, f := range fails[:min(len(fails), maxSinkFailures)] {
			info.SinkFailures = append(info.SinkFailures, sinkFailure{Activation: f.ActivationID, Sink: f.SinkIndex, Attempts: f.Attempts, LastError: f.LastError, NextAttempt: f.NextAttempt})
		}
	}
	return c.JSON(dataBody[functionInfo]{info})
}

// orEmpty shows no events as [] (FunLess's answer), not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// redactSinks hides sink passwords: they are kept to connect, never shown.
func redactSinks(sinks []fnspec.Sink) []fnspec.Sink {
	out := make([]fnspec.Sink, len(sinks))
	for i, s := range sinks {
		out[i] = s.Redacted()
	}
	return out
}

func (s *Server) deleteFunction(c *fiber.Ctx) error {
	module, name, err := functionPath(c)
	if err != nil {
		return err
	}
	if err := s.ownModule(c, module); err != nil {
		return notFound("Function", module+"/"+name, err)
	}
	prev, err := s.store.DeleteFunction(c.UserContext(), module, name)
	if err != nil {
		return notFound("Function", module+"/"+name, err)
	}
	s.log.Info("function deleted", "module", module, "function", name)
	s.removed(c.UserContext(), prev.Digest)
	s.changed(c.UserContext())
	return c.SendStatus(http.StatusNoContent)
}

// invokeBody is {"args":{...},"scheduling":{"language":"app","script":"s"}}.
type invokeBody struct {
	Args       json.RawMessage    `json:"args"`
	Scheduling *invoke.Scheduling `json:"scheduling"`
}

func (s *Server) invoke(c *fiber.Ctx) error {
	if s.tracer.Enabled() {
		return s.tracedInvoke(c)
	}
	return s.runInvoke(c, tracing.SpanContext{})
}

// runInvoke answers an invocation request; trace is its span (zero: untraced).
func (s *Server) runInvoke(c *fiber.Ctx, trace tracing.SpanContext) error {
	var body invokeBody
	if _, err := decodeJSONBody(c, &body, true); err != nil {
		return err
	}
	args := json.RawMessage("{}")
	if len(body.Args) > 0 && string(body.Args) != "null" {
		if body.Args[0] != '{' {
			return fail(ErrBadRequest, "Invalid args: want a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, body.Args); err != nil {
			return fail(ErrBadRequest, "Invalid args: %v", err)
		}
		args = buf.Bytes()
	}
	if len(args) > s.maxInput {
		return fail(ErrTooLarge, "The args are %d bytes as compact JSON; the input limit is %d bytes", len(args), s.maxInput)
	}
	if sc := body.Scheduling; sc != nil {
		if sc.Language != "app" {
			return fail(ErrBadRequest, "Invalid scheduling: language %q is not supported (want \"app\")", sc.Language)
		}
		if err := checkName("script", sc.Script); err != nil {
			return fail(ErrBadRequest, "Invalid scheduling: the script name must be 1 to %d letters, digits or underscores", MaxNameLen)
		}
	}
	fn, err := s.lookupFunction(c)
	if err != nil {
		return err
	}
	if sc := body.Scheduling; sc != nil && !caller(c).Admin {
		// A subject's call names one of its own scripts: another's is not
		// found, as a missing one is (checked here for both, so that the
		// answers match), and the dispatcher never reads it for this caller.
		if _, err := s.ownScript(c, sc.Script); err != nil {
			return err
		}
	}
	req, err := invoke.ForFunction(fn, args, invoke.SourceAPI)
	if err != nil {
		return err
	}
	if body.Scheduling != nil {
		req.Scheduling = *body.Scheduling
	}
	req.Trace = trace
	res, err := s.invoker.Invoke(c.UserContext(), req)
	if id := invoke.ActivationOf(err); id != "" {
		c.Set(invoke.ActivationHeader, id) // the envelope stays FunLess's
	}
	if err != nil {
		return err
	}
	if res.Activation != "" {
		c.Set(invoke.ActivationHeader, res.Activation)
	}
	out := res.Output
	if len(out) == 0 {
		out = json.RawMessage("null")
	}
	return c.JSON(dataBody[json.RawMessage]{out})
}
