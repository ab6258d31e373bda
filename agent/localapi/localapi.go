// Package localapi is the agent's own invoke API: the controller's
// `POST /v1/fn/{module}/{function}` with the same bodies, envelopes and
// status codes (413 for args over the agent's input limit, checked before
// anything runs or is recorded; 423 for quarantined code), served by the
// agent from its desired set and its stored code, so local callers keep
// working when the controller is unreachable.
//
// It listens on loopback by default and needs the agent-local token (a
// random secret kept in <data dir>/local.token, mode 0600). Every
// activation it runs is appended to the durable outbox (fsync'd) before the
// caller gets the answer, so the controller and the function's sinks
// receive it exactly once when the link is back.
//
// Config.Unsynced trades a little of that for latency: the answer goes out
// once the outbox entry is written to the operating system, and the fsync
// follows within 25ms. An agent crash or kill -9 still loses nothing; a
// power cut in those 25ms can lose the record (not the answer) of the
// activations it answered. Triggers always wait for the fsync, since the
// broker redelivers what they do not acknowledge.
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

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

// Recorder keeps a locally run activation; the agent's outbox. key, when
// not nil, identifies the trigger message that started it (remembered in
// the same transaction).
type Recorder interface {
	AppendOutboxKeyed(e *protocol.OutboxEntry, key []byte) error
	// AppendOutboxUnsynced returns before the fsync (Config.Unsynced).
	AppendOutboxUnsynced(e *protocol.OutboxEntry) error
}

// Server is the local invoke API.
type Server struct {
	exec      *executor.Executor
	state     *state.State
	rec       Recorder
	tokenHash [32]byte
	log       *slog.Logger
	onRecord  func() // called after each outbox append (wakes the drainer)
	unsynced  bool
	srv       *http.Server
}

// Config configures a Server.
type Config struct {
	Executor *executor.Executor
	State    *state.State
	// Recorder defaults to State.
	Recorder Recorder
	// Token is the bearer token callers present.
	Token string
	// OnRecord, when set, is called after each activation is recorded.
	OnRecord func()
	// Unsynced answers API calls before the outbox fsync (see the package
	// doc); false waits for it.
	Unsynced bool
	Logger   *slog.Logger
}

// New builds the server; it does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Executor == nil || cfg.State == nil || cfg.Token == "" {
		return nil, errors.New("localapi: executor, state and token are required")
	}
	s := &Server{exec: cfg.Executor, state: cfg.State, rec: cfg.Recorder, tokenHash: sha256.Sum256([]byte(cfg.Token)), log: cfg.Logger, onRecord: cfg.OnRecord, unsynced: cfg.Unsynced}
	if s.rec == nil {
		s.rec = cfg.State
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "wisp agent local API up and running\n")
	})
	mux.HandleFunc("POST /v1/fn/{mod}/{fn}", s.invoke)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Run serves on ln until ctx is done, then lets requests in flight finish
// (at most 10s).
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.srv.Shutdown(sctx)
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
			writeError(w, http.StatusBadRequest, "The body is not valid JSON: "+err.Error())
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
	fn, ok := s.state.DesiredFunction(module, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Function %s/%s not found on this agent", module, name))
		return
	}
	// Refused before anything runs or is recorded, as the controller does.
	if limit := s.exec.Runtime().Limits().InputBytes; len(args) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("The args are %d bytes; this agent's input limit is %d bytes", len(args), limit))
		return
	}
	ans := s.Invoke(r.Context(), Request{Function: fn, Args: args, Source: "local-api", Unsynced: s.unsynced})
	if ans.Status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":`))
		w.Write(ans.Body)
		w.Write([]byte("}\n"))
		return
	}
	writeError(w, ans.Status, string(ans.Body))
}

// Request is one local activation: the HTTP API's, or a trigger's.
type Request struct {
	Function protocol.DesiredFunction
	Args     []byte
	Source   string // "local-api", "local-mqtt"
	// ActivationID is the id to record; "" makes a new one.
	ActivationID string
	// Key identifies the trigger message that started it; it is remembered
	// in the same transaction as the outbox entry. nil: none.
	Key []byte
	// Unsynced returns once the outbox entry is written, before its fsync;
	// ignored with a Key (a trigger acknowledges only what is fsync'd).
	Unsynced bool
}

// Answer is what a local activation produced: the HTTP status and body
// (the output on 200, the error detail otherwise), and whether the
// activation is recorded in the outbox. Recorded is false when nothing ran
// (the code is not on the agent, or the function's queue was full) or the
// outbox append failed: a trigger must then leave its message
// unacknowledged.
type Answer struct {
	Status   int
	Body     []byte
	Recorded bool
}

// Invoke runs a desired function locally and appends the activation to the
// outbox (durably, before returning), whatever the function answered. A
// quarantined function does not run; its refusal is recorded all the same
// (code Quarantined), so that a trigger acknowledges the message instead of
// getting it again and again until an operator releases the code.
func (s *Server) Invoke(ctx context.Context, req Request) Answer {
	id := req.ActivationID
	if id == "" {
		id = activationid.New(time.Now())
	}
	fn := req.Function
	started := time.Now()
	out := s.exec.Invoke(ctx, executor.Call{ActivationID: id, Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Args: req.Args}, nil)
	entry := protocol.OutboxEntry{
		ActivationID: id, Module: fn.Module, Function: fn.Name, Digest: fn.Digest, Source: req.Source,
		Output: out.Output, StartedUnixUS: uint64(started.UnixMicro()), DurationUS: uint64(time.Since(started).Microseconds()),
	}
	ans := Answer{Status: http.StatusOK, Body: out.Output}
	if out.Err != nil {
		ans.Status, ans.Body = statusOf(out.Err)
		entry.Code, entry.Message, entry.Output = executor.WireCode(out.Err), out.Err.Error(), nil
	}
	if errors.Is(out.Err, executor.ErrNoCode) || errors.Is(out.Err, runtime.ErrOverloaded) {
		return ans // nothing ran: there is no activation to record
	}
	var err error
	if req.Unsynced && req.Key == nil {
		err = s.rec.AppendOutboxUnsynced(&entry)
	} else {
		err = s.rec.AppendOutboxKeyed(&entry, req.Key)
	}
	if err != nil {
		s.log.Error("outbox append failed; the activation is not recorded", "activation", id, "module", fn.Module, "function", fn.Name, "err", err)
		return Answer{Status: http.StatusInternalServerError, Body: []byte("The activation could not be recorded: " + err.Error())}
	}
	if s.onRecord != nil {
		s.onRecord()
	}
	ans.Recorded = true
	return ans
}

// statusOf maps a failure to the controller's status codes and detail
// (FunLess's, and Wisp's 413 and 423).
func statusOf(err error) (int, []byte) {
	if errors.Is(err, executor.ErrNoCode) {
		return http.StatusServiceUnavailable, []byte("The function's code is not on this agent yet")
	}
	if errors.Is(err, state.ErrQuarantined) {
		return http.StatusLocked, []byte("The function is quarantined: " + err.Error())
	}
	var rerr *runtime.Error
	if errors.As(err, &rerr) {
		switch rerr.Kind {
		case runtime.KindGuestError:
			return http.StatusUnprocessableEntity, []byte("Error: " + rerr.Msg)
		case runtime.KindInputTooLarge:
			return http.StatusRequestEntityTooLarge, []byte(rerr.Error())
		case runtime.KindOverloaded: // refused before it ran
			return http.StatusServiceUnavailable, []byte("The function is at its limit on this agent; try again later (" + rerr.Msg + ")")
		}
		return http.StatusInternalServerError, []byte(rerr.Error())
	}
	return http.StatusInternalServerError, []byte("Internal server error")
}
