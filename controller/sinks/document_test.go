package sinks

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDocument(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.FixedZone("CET", 3600))
	meta := map[string]any{
		"wisp_module": "m", "wisp_function": "f",
		"wisp_activation": "01JNQ4Z8X9ABCDEFGHJKMNPQRS", "wisp_time": "2026-03-04T04:06:07.008Z",
	}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range meta {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name   string
		output string
		want   map[string]any
	}{
		{"object merged", `{"greeting":"hi","n":1,"nested":{"a":[1,2]}}`, with(map[string]any{"greeting": "hi", "n": 1.0, "nested": map[string]any{"a": []any{1.0, 2.0}}})},
		{"empty object", `{}`, with(nil)},
		{"array", `[1,"two"]`, with(map[string]any{"output": []any{1.0, "two"}})},
		{"number", ` 42 `, with(map[string]any{"output": 42.0})},
		{"string", `"hello"`, with(map[string]any{"output": "hello"})},
		{"null", `null`, with(map[string]any{"output": nil})},
		{"empty", ``, with(map[string]any{"output": nil})},
		{"reserved key", `{"_id":"x","a":1}`, with(map[string]any{"output": map[string]any{"_id": "x", "a": 1.0}})},
		{"metadata clash", `{"wisp_module":"other"}`, with(map[string]any{"output": map[string]any{"wisp_module": "other"}})},
		{"not json", `{oops`, with(map[string]any{"output": "{oops"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Delivery{ActivationID: "01JNQ4Z8X9ABCDEFGHJKMNPQRS", Module: "m", Function: "f", Output: []byte(tt.output), Time: at}
			var got map[string]any
			if err := json.Unmarshal(Document(d), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Document(%s) =\n%v\nwant\n%v", tt.output, got, tt.want)
			}
		})
	}
}

// FuzzDocument: whatever a function outputs, the document is a JSON object
// CouchDB accepts (no "_" keys) with the metadata intact.
func FuzzDocument(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1]`, `"s"`, `{"_id":1}`, `{"wisp_time":0}`, `{`, ``, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		d := Delivery{ActivationID: "A", Module: "m", Function: "f", Output: out, Time: time.Unix(0, 0)}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(Document(d), &doc); err != nil {
			t.Fatalf("document is not a JSON object: %v", err)
		}
		for k := range doc {
			if strings.HasPrefix(k, "_") {
				t.Fatalf("document has reserved key %q", k)
			}
		}
		if string(doc[FieldActivation]) != `"A"` || string(doc[FieldModule]) != `"m"` || string(doc[FieldFunction]) != `"f"` {
			t.Fatalf("metadata lost: %s", Document(d))
		}
	})
}
