package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeFields(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func([]byte) ([]byte, error)
		in     string
		want   string // "" means nil
	}{
		{"events empty", decodeEvents, "  ", ""},
		{"events string port", decodeEvents, `[{"type":"mqtt","params":{"host":"b","port":"1883","topic":"t"}}]`, `[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"t"}}]`},
		{"events number port", decodeEvents, `[{"type":"mqtt","params":{"topic":"t","port":8883,"host":"b"}}]`, `[{"type":"mqtt","params":{"host":"b","port":8883,"topic":"t"}}]`},
		{"events none", decodeEvents, `[]`, `[]`},
		{"events local", decodeEvents, `[{"type":"mqtt","params":{"topic":"sensors/t","local":true}}]`, `[{"type":"mqtt","params":{"topic":"sensors/t","local":true}}]`},
		{"events local ignores broker", decodeEvents, `[{"type":"mqtt","params":{"host":"b","port":1,"topic":"t","local":true}}]`, `[{"type":"mqtt","params":{"topic":"t","local":true}}]`},
		{"sinks", decodeSinks, `[{"type":"couchdb","params":{"url":"https://c/db"}}]`, `[{"type":"couchdb","params":{"url":"https://c/db"}}]`},
		{"metadata", decodeMetadata, `{"capacity":128,"tag":"x"}`, `{"tag":"x","capacity":128}`},
		{"metadata empty", decodeMetadata, `{}`, `{}`},
		{"metadata zero", decodeMetadata, `{"capacity":0}`, `{"capacity":0}`},
		{"metadata idempotent", decodeMetadata, `{"idempotent":true,"tag":"x"}`, `{"tag":"x","idempotent":true}`},
		{"metadata not idempotent", decodeMetadata, `{"idempotent":false}`, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.decode([]byte(tc.in))
			if err != nil || string(got) != tc.want {
				t.Fatalf("decode(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
	if _, err := decodeMetadata([]byte(`{"idempotent":"yes"}`)); !errors.Is(err, ErrBadRequest) {
		t.Errorf(`decodeMetadata({"idempotent":"yes"}) = %v, want ErrBadRequest`, err)
	}
	for _, in := range []string{"true", "TRUE", "1", " True "} {
		if b, err := parseBool("f", in); err != nil || !b {
			t.Errorf("parseBool(%q) = %v, %v", in, b, err)
		}
	}
	for _, in := range []string{"", "false", "0", "False"} {
		if b, err := parseBool("f", in); err != nil || b {
			t.Errorf("parseBool(%q) = %v, %v", in, b, err)
		}
	}
	for _, in := range []string{"yes", "no", "2", "on"} {
		if _, err := parseBool("f", in); !errors.Is(err, ErrBadRequest) {
			t.Errorf("parseBool(%q) = %v, want ErrBadRequest", in, err)
		}
	}
}

// fuzzDecoder checks that a field decoder never panics, fails only with
// ErrBadRequest, and that its output is valid JSON it decodes to itself.
func fuzzDecoder(f *testing.F, decode func([]byte) ([]byte, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := decode(in)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error is not ErrBadRequest: %v", err)
			}
			return
		}
		if out == nil {
			if len(bytes.TrimSpace(in)) != 0 {
				t.Fatalf("nil output for non-empty input %q", in)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q", out)
		}
		again, err := decode(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}

func FuzzDecodeEvents(f *testing.F) {
	fuzzDecoder(f, decodeEvents,
		`[{"type":"mqtt","params":{"host":"b","port":"1883","topic":"t"}}]`,
		`[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"t"}}]`,
		`[]`, `null`, `{"a":1}`, `[{"type":"mqtt","params":{"host":"b","port":"0x10","topic":"t"}}]`)
}

func FuzzDecodeSinks(f *testing.F) {
	fuzzDecoder(f, decodeSinks,
		`[{"type":"couchdb","params":{"url":"http://c:5984/db","username":"u","password":"p"}}]`,
		`[]`, `[{"type":"couchdb","params":{"url":"ftp://x"}}]`)
}

func FuzzDecodeMetadata(f *testing.F) {
	fuzzDecoder(f, decodeMetadata, `{"tag":"t","capacity":1024}`, `{}`, `{"capacity":1e3}`, `{"capacity":"12"}`, `null`, `{"idempotent":true}`)
}
