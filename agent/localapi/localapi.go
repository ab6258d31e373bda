// Package localapi is the agent's own invoke API over HTTP: the
// controller's `POST /v1/fn/{module}/{function}` with the same bodies,
// envelopes and status codes (openapi/openapi.yaml; its tests check the
// routes it serves against that document), served by the agent from its
// desired set and its stored code, so local callers keep working when the
// controller is unreachable.
//
// It is HTTP only: it decodes the request, checks the token, the names and
// the size of the args (413 over the agent's input limit, before anything
// runs or is recorded), calls agent/activation, which runs the function and
// records the activation in the durable outbox before the caller gets the
// answer, and encodes the result or maps the error to a status code (404,
// 423 for quarantined code, 503 when nothing ran, ...).
//
// It listens on loopback by default and needs the agent-local token (a
// random secret kept in <data dir>/local.token, mode 0600), but for the
// health probes GET /healthz and GET /readyz (internal/health: ok or a
// short reason, nothing else). GET /v1/status, for the token too, serves
// the agent's status report (agent/status) that `wisp-agent status` shows.
//
// Config.Unsynced trades a little durability for latency: the answer goes
// out once the outbox entry is written to the operating system, and the
// fsync follows within 25ms. An agent crash or kill -9 still loses nothing;
// a power cut in those 25ms can lose the record (not the answer) of the
// activations it answered.
//
// It uses net/http only: the agent binary must not link fiber.
package localapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wispfn/wisp/agent/activation"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/jsonerr"
)

// Server is the local invoke API.
type Server struct {
	runner        *activation.Runner
	tokenHash     [32]byte
	maxInputBytes int
	log           *slog.Logger
	unsynced      bool
	srv           *http.Server
	status        func(context.Context) (status.Report, error)
}

// Config configures a Server.
type Config struct {
	// Runner runs and records the activations.
	Runner *activation.Runner
	// Token is the bearer token callers present.
	Token string
	// MaxInputBytes bounds the args (the agent runtime's input limit);
	// default runtime.DefaultLimits.InputBytes.
	MaxInputBytes int
	// Unsynced answers before the outbox fsync (see the package doc);
	// false waits for it.
	Unsynced bool
	Logger   *slog.Logger
	// ReadTimeout bounds reading a request, headers and body: a client that
	// sends slowly on purpose is cut off then. Default DefaultReadTimeout.
	ReadTimeout time.Duration
	// Ready is the agent's /readyz verdict; nil: ready while serving.
	// GET /healthz and GET /readyz need no token (internal/health).
	Ready health.Ready
	// Status makes the agent's status report, served as JSON on
	// GET /v1/status to callers with the local token; nil: 404.
	Status func(context.Context) (status.Report, error)
}

// Bounds of the local API's HTTP server (Config.ReadTimeout can lower the
// first). A response is written within WriteTimeout of the function's
// answer; an idle keep-alive connection is closed after IdleTimeout.
const (
	DefaultReadTimeout = 30 * time.Second
	WriteTimeout       = 30 * time.Second
	IdleTimeout        = 2 * time.Minute
	MaxHeaderBytes     = 64 << 10
)

// New builds the server; it does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Runner == nil || cfg.Token == "" {
		return nil, errors.New("localapi: runner and token are required")
	}
	s := &Server{runner: cfg.Runner, tokenHash: sha256.Sum256([]byte(cfg.Token)), maxInputBytes: cfg.MaxInputBytes, log: cfg.Logger, unsynced: cfg.Unsynced,
		status: cfg.Status}
	if s.maxInputBytes <= 0 {
		s.maxInputBytes = runtime.DefaultLimits.InputBytes
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "wisp agent local API up and running\n")
	})
	mux.HandleFunc("POST /v1/fn/{mod}/{fn}", s.invoke)
	health.Register(mux, cfg.Ready)
	if s.status != nil {
		mux.HandleFunc("GET /v1/status", s.serveStatus)
	}
	read := cfg.ReadTimeout
	if read <= 0 {
		read = DefaultReadTimeout
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: min(read, 10*time.Second), ReadTimeout: read,
		IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
	return s, nil
}

// Run serves on ln until ctx is done, then stops listening and lets
// requests in flight finish (at most 10s). It returns once its serving
// goroutine has ended.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(framingListener{ln}) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed, at once: Shutdown closed the listener
	return err
}

// LoadOrCreateToken returns the agent-local token kept in dir/local.token,
// creating it (0600) on first use.
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, "local.token")
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	tok := "wispl_" + base64.RawURLEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}

// ActivationHeader names the activation of an answer: the controller's
// header (controller/invoke.ActivationHeader; this package may not import
// the controller's).
const ActivationHeader = "X-Wisp-Activation-Id"

var nameRE = regexp.MustCompile(`^[_a-zA-Z0-9]{1,160}$`)

// maxBody bounds a request body.
const maxBody = 6 << 20

type errorBody struct {
	Errors struct {
		Detail string `json:"detail"`
	} `json:"errors"`
}

func writeError(w http.ResponseWriter, status int, detail string) {
	var b errorBody
	b.Errors.Detail = detail
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(b)
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1
}

// serveStatus answers GET /v1/status: the agent's status report, for the
// local token only (it names functions, controllers and log lines).
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "Missing or invalid token")
		return
	}
	rep, err := s.status(r.Context())
	if err != nil {
		s.log.Error("status report", "err", err)
		writeError(w, http.StatusInternalServerError, "The status report failed; see the agent's log")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		Data status.Report `json:"data"`
	}{rep})
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "Missing or invalid token")
		return
	}
	module, name := r.PathValue("mod"), r.PathValue("fn")
	if !nameRE.MatchString(module) || !nameRE.MatchString(name) {
		writeError(w, http.StatusUnprocessableEntity, "Names must contain only alphanumeric characters and underscores (1-160)")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Cannot read the request body")
		return
	}
	if len(body) > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "Request body too large")
		return
	}
	args := json.RawMessage(`{}`)
	if len(strings.TrimSpace(string(body))) > 0 {
		var req struct {
			Args json.RawMessage `json:"args"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "Invalid JSON body: "+jsonerr.Reason(err))
			return
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "Invalid JSON body: unexpected data after the JSON value")
			return
		}
		if len(req.Args) > 0 && string(req.Args) != "null" {
			if req.Args[0] != '{' {
				writeError(w, http.StatusBadRequest, "args must be a JSON object")
				return
			}
			args = req.Args
		}
	}
	// Refused before anything runs or is recorded, as the controller does.
	if len(args) > s.maxInputBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("The args are %d bytes; this agent's input limit is %d bytes", len(args), s.maxInputBytes))
		return
	}
	res, err := s.runner.Run(r.Context(), activation.Request{Module: module, Function: name, Args: args, Source: activation.SourceLocalAPI, Unsynced: s.unsynced,
		TraceParent: traceParent(r.Header.Get("traceparent"))})
	// The function may have run for long; the answer is written within
	// WriteTimeout of now, however slowly the client reads.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(WriteTimeout))
	if errors.Is(err, activation.ErrUnknownFunction) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Function %s/%s not found on this agent", module, name))
		return
	}
	if err != nil {
		status, detail := statusOf(err)
		writeError(w, status, detail)
		return
	}
	// The activation is recorded (in the outbox), also when the function
	// failed: the answer names it, beside the FunLess envelope.
	if res.ActivationID != "" {
		w.Header().Set(ActivationHeader, res.ActivationID)
	}
	if res.Err != nil {
		status, detail := statusOf(res.Err)
		writeError(w, status, detail)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"data":`))
	w.Write(res.Output)
	w.Write([]byte("}\n"))
}

// statusOf maps an error of activation.Runner.Run (but ErrUnknownFunction,
// whose detail names the function), or a recorded failure of the
// function, to the controller's status code and detail (FunLess's, and
// Wisp's 413 and 423).
func statusOf(err error) (int, string) {
	var rerr *runtime.Error
	switch {
	case errors.Is(err, activation.ErrNoCode):
		return http.StatusServiceUnavailable, "The function's code is not on this agent yet"
	case errors.Is(err, activation.ErrClosed):
		return http.StatusServiceUnavailable, "The agent is shutting down"
	case errors.Is(err, activation.ErrNotRecorded):
		return http.StatusInternalServerError, "The activation could not be recorded: " + err.Error()
	case errors.Is(err, activation.ErrQuarantined):
		return http.StatusLocked, "The function is quarantined: " + err.Error()
	case errors.As(err, &rerr):
		switch rerr.Kind {
		case runtime.KindGuestError:
			return http.StatusUnprocessableEntity, "Error: " + rerr.Msg
		case runtime.KindInputTooLarge:
			return http.StatusRequestEntityTooLarge, rerr.Error()
		case runtime.KindOverloaded: // refused before it ran
			return http.StatusServiceUnavailable, "The function is at its limit on this agent; try again later (" + rerr.Msg + ")"
		}
		return http.StatusInternalServerError, rerr.Error()
	}
	return http.StatusInternalServerError, "Internal server error"
}

// traceParent returns h when it has the shape of a W3C traceparent of
// version 00 ("00-" 32 hex "-" 16 hex "-" 2 hex), else "": the agent keeps
// it in the outbox entry, and the controller, which knows tracing, parses
// it when the entry arrives. Anything else is ignored, never an error.
func traceParent(h string) string {
	if len(h) != 55 || h[0] != '0' || h[1] != '0' || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return ""
	}
	for i := 3; i < 55; i++ {
		c := h[i]
		if i == 35 || i == 52 {
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return h
}
