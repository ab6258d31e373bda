package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/tracing"
	"github.com/wispfn/wisp/internal/authlimit"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/tasks"
	"github.com/wispfn/wisp/internal/version"
)

const (
	// DefaultMaxUploadBytes is the largest wasm upload accepted by default.
	DefaultMaxUploadBytes = 16 << 20
	// DefaultShutdownTimeout bounds how long Run waits for in-flight requests.
	DefaultShutdownTimeout = 10 * time.Second
	// multipartSlack is what a request may hold besides the code: the other
	// form fields and the multipart framing.
	multipartSlack = 1 << 20
	// maxJSONBody bounds a JSON request body (modules, subjects, invoke).
	maxJSONBody = 6 << 20
)

// Config is what New needs. Store is required; the rest has defaults.
type Config struct {
	Store store.Store
	// Invoker runs invocations (the fleet's dispatcher); nil means
	// invoke.NoWorkers (503).
	Invoker invoke.Dispatcher
	Log     *slog.Logger
	// MaxUploadBytes bounds a function's wasm code; 0 means
	// DefaultMaxUploadBytes. Larger uploads get 413.
	MaxUploadBytes int64
	// Registerer receives the Go and HTTP metrics and Gatherer serves them
	// on /metrics, for the admin token only; nil means a fresh registry of
	// the server's own. MetricsElsewhere leaves /metrics off this server
	// (the controller serves it on its own listener, --metrics-addr).
	Registerer       prometheus.Registerer
	Gatherer         prometheus.Gatherer
	MetricsElsewhere bool
	// ShutdownTimeout bounds the drain in Run; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Distributor pushes code to agents on create/update and drops it on
	// delete; nil means none.
	Distributor Distributor
	// Agents lists agents for GET /v1/agents (admin); nil lists none.
	Agents AgentLister
	// JoinTokens makes agent join tokens (POST /v1/admin/tokens); nil: 503.
	JoinTokens JoinTokens
	// AgentControl removes, cordons, drains, labels and caps agents
	// (/v1/admin/agents/{id}/...); nil: 503.
	AgentControl AgentControl
	// Inspector validates uploaded code (static limits, budgeted
	// compilation); nil means runtime.NewInspector with default limits
	// (module size: MaxUploadBytes) compiling in this process.
	Inspector *runtime.Inspector
	// Quarantine lists and releases quarantined code (admin routes under
	// /v1/admin/quarantine); nil: 503.
	Quarantine Quarantine
	// MaxInvokeInputBytes bounds the compact JSON of an invocation's args,
	// checked before dispatch (413); 0 means the agents' default input
	// limit, runtime.DefaultLimits.InputBytes.
	MaxInvokeInputBytes int
	// Ready says why the controller is not ready ("" when it is), for
	// GET /readyz; nil: ready whenever the API serves. GET /healthz is
	// always 200 while the API serves. Both need no token and say nothing
	// but ok or a short fixed reason (internal/health).
	Ready health.Ready
	// AuthLimit bounds failed authentications per client address (zero
	// fields: authlimit's defaults, 20 in a row then one a second); a
	// client over it gets 429 before its token is looked up.
	AuthLimit authlimit.Config
	// Tracer exports a span per invocation request (POST /v1/fn/...), the
	// parent of the dispatcher's; nil, tracing off, reads no traceparent.
	Tracer *tracing.Exporter
	// Recorded wakes follow streams (GET /v1/activations?follow=1) when
	// this process records activations; nil: they find them by polling
	// the store every FollowPoll.
	Recorded RecordedSignal
	// MaxFollowers and MaxFollowersPerSubject cap the open follow streams;
	// 0 means DefaultMaxFollowers and DefaultMaxFollowersPerSubject.
	MaxFollowers, MaxFollowersPerSubject int
	// FunctionVersions is how many versions of each function are kept
	// (the current one included; the oldest go first) for GET
	// .../versions and rollbacks; 0 means DefaultFunctionVersions.
	FunctionVersions int
	// Secrets keeps module-scoped secrets (/v1/secrets/...); nil: those
	// routes answer 503 and a config naming a secret is refused.
	Secrets Secrets
}

// Server is the REST API. Build it with New, serve it with Run.
type Server struct {
	app     *fiber.App
	store   store.Store
	invoker invoke.Dispatcher
	log     *slog.Logger
	maxCode int64
	drain   time.Duration
	dist    Distributor
	agents  AgentLister
	tokens  JoinTokens
	control AgentControl
	inspect *runtime.Inspector
	// quarantine may be nil.
	quarantine Quarantine
	maxInput   int
	authLimit  *authlimit.Limiter
	tracer     *tracing.Exporter
	ready      health.Ready
	// bg owns what handlers leave running after their answer (code
	// pushes without wait_for_workers, desired-set syncs); Run stops it
	// after the drain.
	bg *tasks.Group
	// follow counts and ends the follow streams; recorded may be nil.
	follow   *followers
	recorded RecordedSignal
	// versions is how many versions of each function are kept.
	versions int
	// secrets may be nil.
	secrets Secrets
}

// New builds the API without doing any I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	if cfg.MaxUploadBytes < 0 {
		return nil, fmt.Errorf("api: MaxUploadBytes %d is negative", cfg.MaxUploadBytes)
	}
	if cfg.MaxInvokeInputBytes < 0 {
		return nil, fmt.Errorf("api: MaxInvokeInputBytes %d is negative", cfg.MaxInvokeInputBytes)
	}
	s := &Server{
		store:   cfg.Store,
		invoker: cfg.Invoker,
		log:     cfg.Log,
		maxCode: cfg.MaxUploadBytes,
		drain:   cfg.ShutdownTimeout,
		dist:    cfg.Distributor,
		agents:  cfg.Agents,
		tokens:  cfg.JoinTokens,
		control: cfg.AgentControl,
		inspect: cfg.Inspector,

		quarantine: cfg.Quarantine,
		maxInput:   cfg.MaxInvokeInputBytes,
		authLimit:  authlimit.New(cfg.AuthLimit),
		tracer:     cfg.Tracer,
		ready:      cfg.Ready,
		bg:         tasks.New(context.Background()),
		follow:     newFollowers(cfg.MaxFollowers, cfg.MaxFollowersPerSubject),
		recorded:   cfg.Recorded,
		secrets:    cfg.Secrets,
		versions:   cfg.FunctionVersions,
	}
	if s.versions < 0 || s.versions > MaxFunctionVersions {
		return nil, fmt.Errorf("api: FunctionVersions %d: want 1 to %d (0: the default)", cfg.FunctionVersions, MaxFunctionVersions)
	}
	if s.versions == 0 {
		s.versions = DefaultFunctionVersions
	}
	if s.maxInput == 0 {
		s.maxInput = runtime.DefaultLimits.InputBytes
	}
	if s.invoker == nil {
		s.invoker = invoke.NoWorkers{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxCode == 0 {
		s.maxCode = DefaultMaxUploadBytes
	}
	if s.inspect == nil {
		s.inspect = runtime.NewInspector(runtime.InspectConfig{Limits: runtime.ModuleLimits{Bytes: int(min(s.maxCode, 1<<30))}})
	}
	if s.drain == 0 {
		s.drain = DefaultShutdownTimeout
	}
	reg, gat := cfg.Registerer, cfg.Gatherer
	if reg == nil || gat == nil {
		r := prometheus.NewRegistry()
		reg, gat = r, r
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}

	bodyLimit := s.maxCode + multipartSlack
	if bodyLimit > 1<<31-1 {
		bodyLimit = 1<<31 - 1
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "wisp-controller",
		BodyLimit:             int(bodyLimit),
		DisableStartupMessage: true,
		// Handlers hand names and bodies to the store and the Invoker, which
		// may keep them: give them memory fasthttp does not reuse.
		Immutable:    true,
		UnescapePath: true,
		ReadTimeout:  60 * time.Second,
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  120 * time.Second,
		ErrorHandler: s.writeError,
	})
	s.app.Server().CloseOnShutdown = true // see Run
	routes := map[string]bool{}
	s.app.Hooks().OnRoute(func(r fiber.Route) error {
		routes[r.Method+" "+r.Path] = true
		return nil
	})
	s.app.Use(m.middleware(routes, s.writeError))
	s.app.Use(checkFraming)

	if !cfg.MetricsElsewhere {
		s.app.Get("/metrics", s.authenticate, s.requireAdmin, adaptor.HTTPHandler(promhttp.HandlerFor(gat, promhttp.HandlerOpts{})))
	}
	s.app.Get("/v1", s.banner)
	s.app.Get(health.LivePath, s.live)
	s.app.Get(health.ReadyPath, s.readyz)

	v1 := s.app.Group("/v1", s.authenticate)
	v1.Get("/fn", s.listModules)
	v1.Post("/fn", s.createModule)
	v1.Get("/fn/:mod", s.getModule)
	v1.Put("/fn/:mod", s.renameModule)
	v1.Delete("/fn/:mod", s.deleteModule)
	v1.Post("/fn/:mod", s.createFunction)
	v1.Get("/fn/:mod/:fn", s.getFunction)
	v1.Put("/fn/:mod/:fn", s.updateFunction)
	v1.Delete("/fn/:mod/:fn", s.deleteFunction)
	v1.Post("/fn/:mod/:fn", s.invoke)
	v1.Get("/fn/:mod/:fn/versions", s.listVersions)
	v1.Post("/fn/:mod/:fn/rollback", s.rollback)
	v1.Get("/secrets/:mod", s.listSecrets)
	v1.Put("/secrets/:mod/:name", s.putSecret)
	v1.Delete("/secrets/:mod/:name", s.deleteSecret)
	v1.Get("/scripts/app", s.listScripts)
	v1.Post("/scripts/app", s.createScript)
	v1.Get("/scripts/app/:name", s.getScript)
	v1.Get("/admin/subjects", s.requireAdmin, s.listSubjects)
	v1.Post("/admin/subjects", s.requireAdmin, s.createSubject)
	v1.Delete("/admin/subjects/:name", s.requireAdmin, s.deleteSubject)
	v1.Post("/admin/subjects/:name/rotate", s.requireAdmin, s.rotateSubject)
	v1.Get("/agents", s.requireAdmin, s.listAgents)
	v1.Get("/activations", s.listActivations)
	v1.Get("/activations/:id", s.getActivation)
	v1.Post("/admin/tokens", s.requireAdmin, s.createToken)
	v1.Get("/admin/tokens", s.requireAdmin, s.listTokens)
	v1.Delete("/admin/tokens/:id", s.requireAdmin, s.revokeToken)
	v1.Get("/admin/quarantine", s.requireAdmin, s.listQuarantine)
	v1.Delete("/admin/quarantine/:digest", s.requireAdmin, s.releaseQuarantine)
	s.agentRoutes(v1)
	return s, nil
}

// Run serves on ln until ctx is done, then stops accepting, lets in-flight
// requests finish within the shutdown timeout (on a fresh context, since
// ctx is already done), cancels and waits for what the handlers left
// running (code pushes, desired-set syncs) and returns. It does not close
// the store. A Server runs once.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	defer s.bg.Stop()
	errc := make(chan error, 1)
	go func() { errc <- s.app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down the REST API", "timeout", s.drain)
	// The listener closes first, so new connections are refused at once;
	// idle keep-alive connections are closed, and a request in flight gets
	// its answer with "Connection: close" (CloseOnShutdown) and then its
	// connection closes, so clients move to another controller. Follow
	// streams never end by themselves: they are ended meanwhile.
	shutc := make(chan error, 1)
	go func() { shutc <- s.app.ShutdownWithTimeout(s.drain) }()
	fctx, cancel := context.WithTimeout(context.Background(), s.drain)
	followErr := s.follow.shutdown(fctx)
	cancel()
	shutErr := <-shutc
	// Shutdown closes only the listeners Serve has registered; close ln too
	// in case Serve had not started yet, so that it cannot start serving now.
	ln.Close()
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	if shutErr != nil {
		return fmt.Errorf("api: shutdown: %w", shutErr)
	}
	if followErr != nil {
		return fmt.Errorf("api: shutdown: %w", followErr)
	}
	return nil
}

// writeError is fiber's error handler: every error response goes through it.
func (s *Server) writeError(c *fiber.Ctx, err error) error {
	code, detail := statusOf(err)
	if code >= 500 {
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "status", code, "err", err)
	} else {
		s.log.Debug("request refused", "method", c.Method(), "path", c.Path(), "status", code, "err", err)
	}
	if errors.Is(err, ErrBusy) {
		c.Set(fiber.HeaderRetryAfter, "10")
	}
	return c.Status(code).JSON(errorBody{Errors: errorDetail{Detail: detail}})
}

func (s *Server) banner(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.SendString("Wisp " + version.Version + " (FunLess API) is up and running\n")
}

// live answers GET /healthz: the API serves.
func (s *Server) live(c *fiber.Ctx) error { return probeAnswer(c, "") }

// readyz answers GET /readyz with Config.Ready's verdict.
func (s *Server) readyz(c *fiber.Ctx) error {
	reason := ""
	if s.ready != nil {
		reason = s.ready(c.UserContext())
	}
	return probeAnswer(c, reason)
}

// probeAnswer writes internal/health's answer for reason without
// allocating: fasthttp copies the constant pieces into its own buffer.
func probeAnswer(c *fiber.Ctx, reason string) error {
	status, prefix, body := health.Answer(reason)
	c.Status(status)
	c.Set(fiber.HeaderContentType, health.ContentType)
	c.Set(fiber.HeaderCacheControl, health.CacheControl)
	if prefix == "" {
		c.Response().SetBodyString(body)
		return nil
	}
	c.Response().AppendBodyString(prefix)
	c.Response().AppendBodyString(body)
	c.Response().AppendBodyString("\n")
	return nil
}

const subjectKey = "wisp.subject"

// authenticate checks the bearer token and keeps the subject for later
// handlers.
func (s *Server) authenticate(c *fiber.Ctx) error {
	h := c.Get(fiber.HeaderAuthorization)
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return fail(ErrUnauthorized, "Missing or invalid token: send Authorization: Bearer <token>")
	}
	if ok, wait := s.authLimit.Allow(c.IP()); !ok {
		secs := int(max(1, (wait+time.Second-1)/time.Second))
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(secs))
		return fail(ErrTooManyRequests, "Too many failed authentications from this address; retry in %d s", secs)
	}
	subj, err := auth.Authenticate(c.UserContext(), s.store, strings.TrimSpace(token))
	if errors.Is(err, auth.ErrBadToken) {
		s.authLimit.Fail(c.IP())
		return fail(ErrUnauthorized, "Missing or invalid token")
	}
	if err != nil {
		return err
	}
	c.Locals(subjectKey, subj)
	return c.Next()
}

func (s *Server) requireAdmin(c *fiber.Ctx) error {
	if subj, _ := c.Locals(subjectKey).(store.Subject); !subj.Admin {
		return fail(ErrForbidden, "Only the admin may manage subjects")
	}
	return c.Next()
}
