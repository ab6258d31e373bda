package api

import (
	"encoding/json"
	"errors"
	"strconv"
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

// listActivations is GET /v1/activations?module=&function=&since=&after=&limit=.
func (s *Server) listActivations(c *fiber.Ctx) error {
	f := store.ActivationFilter{Module: c.Query("module"), Function: c.Query("function"), After: c.Query("after")}
	if subj := caller(c); !subj.Admin {
		f.Owner = subj.Name // only the activations of its modules
	}
	if f.Module != "" {
		if err := checkName("module", f.Module); err != nil {
			return err
		}
	}
	if f.Function != "" {
		if err := checkName("function", f.Function); err != nil {
			return err
		}
	}
	if v := c.Query("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fail(ErrBadRequest, "since %q: want an RFC 3339 time such as 2026-11-25T10:00:00Z", v)
		}
		f.Since = t
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fail(ErrBadRequest, "limit %q: want 1 to 1000", v)
		}
		f.Limit = n
	}
	as, err := s.store.ListActivations(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := make([]activationInfo, len(as))
	for i, a := range as {
		out[i] = toActivationInfo(a)
	}
	return c.JSON(dataBody[[]activationInfo]{out})
}
