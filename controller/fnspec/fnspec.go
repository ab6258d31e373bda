package fnspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/wispfn/wisp/internal/jsonerr"
)

// ErrInvalid marks every parse error of this package; its text is
// "Invalid <field>: <reason>", fit for an API client.
var ErrInvalid = errors.New("invalid function setting")

// Error is a setting that does not parse.
type Error struct {
	Field  string // "events", "sinks" or "metadata"
	Reason string
}

func (e *Error) Error() string { return "Invalid " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Spec is a function's settings. The zero Spec is a function without any.
type Spec struct {
	Events   []Event
	Sinks    []Sink
	Metadata Metadata
	// Config is the function's environment, secret names and egress
	// allowlist (issue 14).
	Config Config
}

// Encode returns the normalised JSON of each setting, nil for an absent
// one (no events, no sinks, zero metadata, zero config): what the store
// keeps.
func (s Spec) Encode() (events, sinks, metadata, config []byte) {
	if len(s.Events) > 0 {
		events = mustMarshal(s.Events)
	}
	if len(s.Sinks) > 0 {
		sinks = mustMarshal(s.Sinks)
	}
	if s.Metadata != (Metadata{}) {
		metadata = mustMarshal(s.Metadata)
	}
	if !s.Config.IsZero() {
		config = mustMarshal(s.Config)
	}
	return events, sinks, metadata, config
}

// Decode parses the stored JSON of each setting (nil or empty: absent)
// with the parsers the API uses. A field that does not parse is left zero
// and named in the error, which wraps ErrInvalid; the others are returned.
func Decode(events, sinks, metadata, config []byte) (Spec, error) {
	var s Spec
	var errs []error
	var err error
	if s.Events, err = ParseEvents(events); err != nil {
		errs = append(errs, err)
	}
	if s.Sinks, err = ParseSinks(sinks); err != nil {
		errs = append(errs, err)
	}
	if s.Metadata, err = ParseMetadata(metadata); err != nil {
		errs = append(errs, err)
	}
	if s.Config, err = ParseConfig(config); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fnspec: " + err.Error()) // plain structs of strings and numbers always marshal
	}
	return b
}

// absent reports whether a field's raw value means "not given".
func absent(raw []byte) bool { return len(bytes.TrimSpace(raw)) == 0 }

// strictUnmarshal decodes one JSON value with unknown fields refused and
// nothing after it.
func strictUnmarshal(field string, raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return invalid(field, "%s", jsonerr.Reason(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid(field, "unexpected data after the JSON value")
	}
	return nil
}
