package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// MaxNameLen is the longest module, function, subject or script name.
const MaxNameLen = 160

var nameRE = regexp.MustCompile(`^[_a-zA-Z0-9]+$`)

// checkName enforces FunLess's naming rule. what is "module", "function"...
func checkName(what, name string) error {
	if len(name) == 0 || len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return fail(ErrInvalidName, "Invalid %s name: must be 1 to %d characters among letters, digits and underscores", what, MaxNameLen)
	}
	return nil
}

// The decoders below turn the JSON-in-a-text-field parts of a function
// upload into their normalised form, the bytes the store keeps. An empty
// field means absent (nil). Every error wraps ErrBadRequest and names the
// field.

// Event is one trigger of a function. Only MQTT exists.
type Event struct {
	Type   string      `json:"type"`
	Params EventParams `json:"params"`
}

// EventParams are an MQTT subscription's. Port is normalised to a number.
// Local (Wisp's addition) makes it an edge-local trigger: every agent that
// holds the function subscribes on its own broker (--mqtt-broker), so it
// fires during a partition; host and port are then optional and ignored.
type EventParams struct {
	Host  string `json:"host,omitempty"`
	Port  int    `json:"port,omitempty"`
	Topic string `json:"topic"`
	Local bool   `json:"local,omitempty"`
}

// Sink is where a function's outputs are stored. Only CouchDB exists.
type Sink struct {
	Type   string     `json:"type"`
	Params SinkParams `json:"params"`
}

// SinkParams are a CouchDB database's.
type SinkParams struct {
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Metadata is what scheduling and dispatch need to know about a function.
type Metadata struct {
	Tag string `json:"tag,omitempty"`
	// Capacity is the memory the function needs, in KiB (FunLess says KB
	// and compares bytes; Wisp uses KiB throughout).
	Capacity *int64 `json:"capacity,omitempty"`
	// Idempotent (Wisp's addition) says that running the function twice
	// for one call does no harm, which lets the controller run a call on
	// another agent when the first one is alive but does not start it
	// (docs/delivery.md).
	Idempotent bool `json:"idempotent,omitempty"`
}

// strictUnmarshal decodes one JSON value with unknown fields refused and
// nothing after it.
func strictUnmarshal(field string, raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fail(ErrBadRequest, "Invalid %s: %s", field, jsonReason(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail(ErrBadRequest, "Invalid %s: unexpected data after the JSON value", field)
	}
	return nil
}

// jsonReason rewrites encoding/json's errors for clients.
func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se.Error())
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("want %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: unexpected end"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(k string) string {
	switch k {
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "string":
		return "a string"
	case "int", "int64", "ptr":
		return "an integer"
	}
	return k
}

// decodeEvents validates the events field:
// [{"type":"mqtt","params":{"host":"h","port":1883|"1883","topic":"t"}}].
func decodeEvents(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var in []struct {
		Type   string `json:"type"`
		Params *struct {
			Host  string          `json:"host"`
			Port  json.RawMessage `json:"port"`
			Topic string          `json:"topic"`
			Local bool            `json:"local"`
		} `json:"params"`
	}
	if err := strictUnmarshal("events", raw, &in); err != nil {
		return nil, err
	}
	if in == nil {
		return nil, fail(ErrBadRequest, "Invalid events: want an array of events")
	}
	out := make([]Event, 0, len(in))
	for i, e := range in {
		if e.Type != "mqtt" {
			return nil, fail(ErrBadRequest, "Invalid events: event %d: type %q is not supported (want \"mqtt\")", i, e.Type)
		}
		if e.Params == nil {
			return nil, fail(ErrBadRequest, "Invalid events: event %d: params are missing", i)
		}
		p := e.Params
		if p.Topic == "" {
			return nil, fail(ErrBadRequest, "Invalid events: event %d: params.topic is missing", i)
		}
		if p.Local {
			out = append(out, Event{Type: e.Type, Params: EventParams{Topic: p.Topic, Local: true}})
			continue
		}
		if strings.TrimSpace(p.Host) == "" {
			return nil, fail(ErrBadRequest, "Invalid events: event %d: params.host is missing", i)
		}
		port, err := decodePort(p.Port)
		if err != nil {
			return nil, fail(ErrBadRequest, "Invalid events: event %d: params.port %s", i, err)
		}
		out = append(out, Event{Type: e.Type, Params: EventParams{Host: p.Host, Port: port, Topic: p.Topic}})
	}
	return json.Marshal(out)
}

// decodePort accepts 1883 or "1883".
func decodePort(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New("is missing")
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("is not a valid string")
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New("must be a port number from 1 to 65535")
	}
	return n, nil
}

// decodeSinks validates the sinks field:
// [{"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"p"}}].
func decodeSinks(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var in []struct {
		Type   string      `json:"type"`
		Params *SinkParams `json:"params"`
	}
	if err := strictUnmarshal("sinks", raw, &in); err != nil {
		return nil, err
	}
	if in == nil {
		return nil, fail(ErrBadRequest, "Invalid sinks: want an array of sinks")
	}
	out := make([]Sink, 0, len(in))
	for i, s := range in {
		if s.Type != "couchdb" {
			return nil, fail(ErrBadRequest, "Invalid sinks: sink %d: type %q is not supported (want \"couchdb\")", i, s.Type)
		}
		if s.Params == nil {
			return nil, fail(ErrBadRequest, "Invalid sinks: sink %d: params are missing", i)
		}
		u, err := url.Parse(s.Params.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fail(ErrBadRequest, "Invalid sinks: sink %d: params.url must be an http or https URL", i)
		}
		out = append(out, Sink{Type: s.Type, Params: *s.Params})
	}
	return json.Marshal(out)
}

// decodeMetadata validates the metadata field:
// {"tag":"t","capacity":<KiB>,"idempotent":true}.
func decodeMetadata(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var in *struct {
		Tag        *string      `json:"tag"`
		Capacity   *json.Number `json:"capacity"`
		Idempotent *bool        `json:"idempotent"`
	}
	if err := strictUnmarshal("metadata", raw, &in); err != nil {
		return nil, err
	}
	if in == nil {
		return nil, fail(ErrBadRequest, "Invalid metadata: want an object")
	}
	var m Metadata
	if in.Tag != nil {
		m.Tag = *in.Tag
	}
	if in.Capacity != nil {
		c, err := strconv.ParseInt(in.Capacity.String(), 10, 64)
		if err != nil || c < 0 {
			return nil, fail(ErrBadRequest, "Invalid metadata: capacity must be a whole number of KiB, 0 or more")
		}
		m.Capacity = &c
	}
	if in.Idempotent != nil {
		m.Idempotent = *in.Idempotent
	}
	return json.Marshal(m)
}

// parseBool reads wait_for_workers: true/false/1/0 (any case); empty is false.
func parseBool(field, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, fail(ErrBadRequest, "Invalid %s: want true, false, 1 or 0", field)
}
