package sinks

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Metadata fields Wisp adds to every document.
const (
	FieldModule     = "wisp_module"
	FieldFunction   = "wisp_function"
	FieldActivation = "wisp_activation"
	FieldTime       = "wisp_time"
	// FieldOutput holds the output when it cannot be merged into the document.
	FieldOutput = "output"
)

// timeLayout is RFC 3339 with a fixed millisecond part, so that the strings
// sort like the times they stand for.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Document returns the CouchDB document stored for d, without its _id (the
// activation id), which goes in the request path of a single write and is
// added in front by a batch write.
//
// The function's output, when it is a JSON object, is merged with the
// metadata fields wisp_module, wisp_function, wisp_activation and wisp_time
// (RFC 3339, UTC, milliseconds). The output goes instead, whole, under the
// field "output" when it cannot be merged without losing or corrupting
// anything:
//   - it is not an object (an array, a string, a number, true/false, null);
//   - it has a key that begins with "_" (CouchDB reserves them and rejects
//     unknown ones) or a key equal to a metadata field;
//   - it is not valid JSON (then "output" is the text as a JSON string), which
//     a successful invocation should never produce.
//
// An empty output is null.
func Document(d Delivery) []byte {
	meta := map[string]any{
		FieldModule:     d.Module,
		FieldFunction:   d.Function,
		FieldActivation: d.ActivationID,
		FieldTime:       d.Time.UTC().Format(timeLayout),
	}
	out := bytes.TrimSpace(d.Output)
	if len(out) == 0 {
		out = []byte("null")
	}
	var obj map[string]json.RawMessage
	switch {
	case !json.Valid(out):
		meta[FieldOutput] = string(d.Output)
	case out[0] == '{' && json.Unmarshal(out, &obj) == nil && mergeable(obj):
		for k, v := range obj {
			meta[k] = v
		}
	default:
		meta[FieldOutput] = json.RawMessage(out)
	}
	doc, err := json.Marshal(meta)
	if err != nil { // cannot happen: every value is a string or valid JSON
		panic("sinks: marshalling a document: " + err.Error())
	}
	return doc
}

func mergeable(obj map[string]json.RawMessage) bool {
	for k := range obj {
		switch {
		case strings.HasPrefix(k, "_"), k == FieldModule, k == FieldFunction, k == FieldActivation, k == FieldTime:
			return false
		}
	}
	return true
}
