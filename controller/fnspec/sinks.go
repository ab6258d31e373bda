package fnspec

import (
	"fmt"
	"net/url"
)

// Sink is where a function's outputs are stored. Only CouchDB exists. Its
// JSON is FunLess's:
// {"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"p"}}.
type Sink struct {
	Type   string     `json:"type"` // "couchdb"
	Params SinkParams `json:"params"`
}

// SinkParams are a CouchDB database's. They marshal with the password (the
// store must keep it); [Sink.Redacted] is what may be shown.
type SinkParams struct {
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Redacted stands for a stored password in what the API shows.
const Redacted = "********"

// Redacted returns s with its password replaced by [Redacted].
func (s Sink) Redacted() Sink {
	if s.Params.Password != "" {
		s.Params.Password = Redacted
	}
	return s
}

// ParseSinks parses a sinks field:
// [{"type":"couchdb","params":{"url":"http://couch:5984/db","username":"u","password":"p"}}].
// Empty means no sinks (nil). Whether the database name suits CouchDB and
// the server answers is checked when the function is connected
// (controller/sinks), and reported with FunLess's 207.
//
// # Errors
//
// An *Error (wrapping ErrInvalid) for malformed JSON, unknown keys, a type
// other than "couchdb", missing params, or a URL that is not http(s) with
// a host.
func ParseSinks(raw []byte) ([]Sink, error) {
	if absent(raw) {
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
		return nil, invalid("sinks", "want an array of sinks")
	}
	out := make([]Sink, 0, len(in))
	for i, s := range in {
		if err := checkSink(s.Type, s.Params); err != nil {
			return nil, invalid("sinks", "sink %d: %s", i, err.Reason)
		}
		out = append(out, Sink{Type: s.Type, Params: *s.Params})
	}
	return out, nil
}

func checkSink(typ string, p *SinkParams) *Error {
	if typ != "couchdb" {
		return &Error{Field: "sink", Reason: fmt.Sprintf("type %q is not supported (want \"couchdb\")", typ)}
	}
	if p == nil {
		return &Error{Field: "sink", Reason: "params are missing"}
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &Error{Field: "sink", Reason: "params.url must be an http or https URL"}
	}
	return nil
}

// EncodeSink is the JSON a queued delivery keeps of its sink.
func EncodeSink(s Sink) []byte { return mustMarshal(s) }

// DecodeSink parses what EncodeSink wrote, with ParseSinks' checks.
func DecodeSink(raw []byte) (Sink, error) {
	var in struct {
		Type   string      `json:"type"`
		Params *SinkParams `json:"params"`
	}
	if err := strictUnmarshal("sink", raw, &in); err != nil {
		return Sink{}, err
	}
	if err := checkSink(in.Type, in.Params); err != nil {
		return Sink{}, err
	}
	return Sink{Type: in.Type, Params: *in.Params}, nil
}
