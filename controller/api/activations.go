package api

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/store"
)

// activationInfo is one activation as GET /v1/activations shows it.
type activationInfo struct {
	ID         string          `json:"id"`
	Module     string          `json:"module"`
	Function   string          `json:"function"`
	Digest     string          `json:"digest"`
	Agent      string          `json:"agent"`
	Source     string          `json:"source"`
	Status     string          `json:"status"` // "success" or "error"
	Code       int             `json:"code"`
	Message    string          `json:"message,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
	Started    time.Time       `json:"started"`
	DurationUS int64           `json:"duration_us"`
	// Truncated: the record keeps only the beginning of the output or of
	// the message (controller/activations bounds them); the output is then
	// shown as a JSON string of that beginning, which is not JSON itself.
	Truncated bool `json:"truncated"`
	// Logs are the lines the function wrote, in order, as the record keeps
	// them (bounded: --activation-max-log-lines/-bytes); [] for none.
	Logs []logLineInfo `json:"logs"`
}

// logLineInfo is one log line of an activation.
type logLineInfo struct {
	// Time is when the agent captured the line, RFC 3339 in UTC to the
	// microsecond; absent when the agent did not say (before protocol 3).
	Time   string `json:"time,omitempty"`
	Stream string `json:"stream"` // "console", "stderr" or "wisp" (a line the platform added)
	// Text is the line without its line ending; bytes that are not UTF-8
	// are shown as U+FFFD.
	Text string `json:"text"`
}

// logTimeFormat is RFC 3339 with exactly six fractional digits.
const logTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

func toLogLines(lines []store.LogLine) []logLineInfo {
	out := make([]logLineInfo, len(lines))
	for i, l := range lines {
		out[i] = logLineInfo{Stream: l.Stream, Text: l.Text}
		if !l.Time.IsZero() {
			out[i].Time = l.Time.UTC().Format(logTimeFormat)
		}
	}
	return out
}

func toActivationInfo(a store.Activation) activationInfo {
	status := "success"
	if a.Code != 0 {
		status = "error"
	}
	info := activationInfo{ID: a.ID, Module: a.Module, Function: a.Function, Digest: a.Digest, Agent: a.Agent,
		Source: a.Source, Status: status, Code: a.Code, Message: a.Message, Started: a.Started, DurationUS: a.Duration.Microseconds(),
		Truncated: a.Truncated, Logs: toLogLines(a.Logs)}
	switch {
	case len(a.Output) == 0:
	case a.Truncated:
		// A cut JSON text is no JSON (or worse, other JSON: "12345" cut
		// to "123"): it is shown as a string, never as a value.
		info.Output, _ = json.Marshal(string(a.Output))
	case json.Valid(a.Output):
		info.Output = a.Output
	}
	return info
}

// getActivation is GET /v1/activations/{id}.
func (s *Server) getActivation(c *fiber.Ctx) error {
	id := c.Params("id")
	if len(id) != 26 {
		return fail(store.ErrNotFound, "Activation %q not found", id)
	}
	a, err := s.store.GetActivation(c.UserContext(), id)
	if err == nil && !sees(caller(c), a.Owner) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return failCause(store.ErrNotFound, err, "Activation %s not found", id)
	}
	if err != nil {
		return err
	}
	return c.JSON(dataBody[activationInfo]{toActivationInfo(a)})
}

// activationPage is GET /v1/activations's answer: the page and, when the
// page is full (there may be more), the cursor of the next one.
type activationPage struct {
	Data []activationInfo `json:"data"`
	// Next is the id to pass as before (newest first) or after (oldest
	// first) for the next page; absent when this page was the last.
	Next string `json:"next,omitempty"`
}

// activationQuery parses the filters GET /v1/activations shares with its
// follow mode: module, function, agent, status, source, since, until, and
// the caller's ownership.
func (s *Server) activationQuery(c *fiber.Ctx) (store.ActivationFilter, error) {
	f := store.ActivationFilter{Module: c.Query("module"), Function: c.Query("function"), Source: c.Query("source")}
	if subj := caller(c); !subj.Admin {
		f.Owner = subj.Name // only the activations of its modules
	}
	if f.Module != "" {
		if err := checkName("module", f.Module); err != nil {
			return f, err
		}
	}
	if f.Function != "" {
		if err := checkName("function", f.Function); err != nil {
			return f, err
		}
	}
	switch f.Source {
	case "", "api", "mqtt", "timer", "local-api", "local-mqtt", "local-timer":
	default:
		return f, fail(ErrBadRequest, "source %q: want api, mqtt, timer, local-api, local-mqtt or local-timer", f.Source)
	}
	switch st := store.ActivationStatus(c.Query("status")); st {
	case "", store.StatusSuccess, store.StatusError:
		f.Status = st
	default:
		return f, fail(ErrBadRequest, "status %q: want success or error", st)
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := c.Query(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, fail(ErrBadRequest, "%s %q: want an RFC 3339 time such as 2026-11-25T10:00:00Z", p.name, v)
			}
			*p.t = t
		}
	}
	if v := c.Query("agent"); v != "" {
		agents, err := s.agentIDs(c, v)
		if err != nil {
			return f, err
		}
		f.Agents = agents
	}
	return f, nil
}

// agentIDs resolves the agent filter: an agent id ("ag_..."), or a name,
// which selects every known agent of that name (names are not unique; a
// name no agent has selects none). Removed agents are no longer known by
// name, only by id.
func (s *Server) agentIDs(c *fiber.Ctx, v string) ([]string, error) {
	if strings.HasPrefix(v, "ag_") {
		return []string{v}, nil
	}
	if len(v) > MaxNameLen {
		return nil, fail(ErrBadRequest, "agent: want an agent id (ag_...) or a name of at most %d bytes", MaxNameLen)
	}
	all, err := s.store.ListAgents(c.UserContext())
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, a := range all {
		if a.Name == v {
			ids = append(ids, a.ID)
		}
	}
	return ids, nil
}

// listActivations is GET /v1/activations: newest first (order=oldest for
// oldest first), with the filters of activationQuery, before= and after=
// id bounds, limit, and follow=1 for a stream (follow.go).
func (s *Server) listActivations(c *fiber.Ctx) error {
	f, err := s.activationQuery(c)
	if err != nil {
		return err
	}
	switch v := c.Query("follow"); v {
	case "", "0", "false":
	case "1", "true":
		return s.followActivations(c, f)
	default:
		return fail(ErrBadRequest, "follow %q: want 1 or 0", v)
	}
	switch v := c.Query("order"); v {
	case "", "newest":
		f.Order = store.NewestFirst
	case "oldest":
		f.Order = store.OldestFirst
	default:
		return fail(ErrBadRequest, "order %q: want newest or oldest", v)
	}
	for _, p := range []struct {
		name string
		id   *string
	}{{"after", &f.After}, {"before", &f.Before}} {
		if v := c.Query(p.name); v != "" {
			if len(v) != 26 {
				return fail(ErrBadRequest, "%s %q: want an activation id (26 characters)", p.name, v)
			}
			*p.id = v
		}
	}
	f.Limit = store.DefaultActivationLimit
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxActivationLimit {
			return fail(ErrBadRequest, "limit %q: want 1 to %d", v, store.MaxActivationLimit)
		}
		f.Limit = n
	}
	as, err := s.store.ListActivations(c.UserContext(), f)
	if err != nil {
		return err
	}
	page := activationPage{Data: make([]activationInfo, len(as))}
	for i, a := range as {
		page.Data[i] = toActivationInfo(a)
	}
	if len(as) == f.Limit {
		page.Next = as[len(as)-1].ID
	}
	return c.JSON(page)
}
