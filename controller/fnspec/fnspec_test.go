package fnspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/mqtttopic"
)

// The per-field parsers as decoders of one field's JSON to its normalised
// JSON: nil for an absent field.
func parseEvents(raw []byte) ([]byte, error) {
	evs, err := ParseEvents(raw)
	for _, e := range evs {
		// What every reader relies on (the agents' triggers, the cloud
		// subscriptions): a plain error here fails the fuzz target.
		p := e.Params
		if e.Type == "timer" {
			if _, ok := e.Schedule(); !ok || p.Host != "" || p.Port != 0 || p.Topic != "" || (p.Cron == "") == (p.Every == "") {
				return nil, fmt.Errorf("accepted an unusable timer %+v", e)
			}
			continue
		}
		if e.Type != "mqtt" || !mqtttopic.ValidFilter(p.Topic) ||
			(p.Local && (p.Host != "" || p.Port != 0)) || (!p.Local && (p.Host == "" || p.Port < 1 || p.Port > 65535)) {
			return nil, fmt.Errorf("accepted an unusable event %+v", e)
		}
	}
	return normalised(evs, err)
}
func parseSinks(raw []byte) ([]byte, error)    { return normalised(ParseSinks(raw)) }
func parseMetadata(raw []byte) ([]byte, error) { return normalisedMeta(raw) }

func normalised[T any](v []T, err error) ([]byte, error) {
	if err != nil || v == nil {
		return nil, err
	}
	return json.Marshal(v)
}

func normalisedMeta(raw []byte) ([]byte, error) {
	if absent(raw) {
		return nil, nil
	}
	m, err := ParseMetadata(raw)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func TestParseFields(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func([]byte) ([]byte, error)
		in    string
		want  string // "" means nil
	}{
		{"events empty", parseEvents, "  ", ""},
		{"events string port", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":"1883","topic":"t"}}]`, `[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"t"}}]`},
		{"events number port", parseEvents, `[{"type":"mqtt","params":{"topic":"t","port":8883,"host":"b"}}]`, `[{"type":"mqtt","params":{"host":"b","port":8883,"topic":"t"}}]`},
		{"events wildcard", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":8883,"topic":"a/+/c"}}]`, `[{"type":"mqtt","params":{"host":"b","port":8883,"topic":"a/+/c"}}]`},
		{"events none", parseEvents, `[]`, `[]`},
		{"events local", parseEvents, `[{"type":"mqtt","params":{"topic":"sensors/t","local":true}}]`, `[{"type":"mqtt","params":{"topic":"sensors/t","local":true}}]`},
		{"timer cron", parseEvents, `[{"type":"timer","params":{"cron":" */1  *  * * * "}}]`, `[{"type":"timer","params":{"cron":"*/1 * * * *"}}]`},
		{"timer cron names local", parseEvents, `[{"type":"timer","params":{"cron":"0 9 * JAN-MAR mon-fri","local":true}}]`, `[{"type":"timer","params":{"cron":"0 9 * JAN-MAR mon-fri","local":true}}]`},
		{"timer every normalised", parseEvents, `[{"type":"timer","params":{"every":"90s","local":false}}]`, `[{"type":"timer","params":{"every":"1m30s"}}]`},
		{"timer beside mqtt", parseEvents, `[{"type":"mqtt","params":{"topic":"t","local":true}},{"type":"timer","params":{"every":"1s","local":true}}]`, `[{"type":"mqtt","params":{"topic":"t","local":true}},{"type":"timer","params":{"every":"1s","local":true}}]`},
		{"events local ignores broker", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":1,"topic":"t","local":true}}]`, `[{"type":"mqtt","params":{"topic":"t","local":true}}]`},
		{"sinks", parseSinks, `[{"type":"couchdb","params":{"url":"https://c/db"}}]`, `[{"type":"couchdb","params":{"url":"https://c/db"}}]`},
		{"metadata", parseMetadata, `{"capacity":128,"tag":"x"}`, `{"tag":"x","capacity":128}`},
		{"metadata empty", parseMetadata, `{}`, `{}`},
		{"metadata zero", parseMetadata, `{"capacity":0}`, `{"capacity":0}`},
		{"metadata idempotent", parseMetadata, `{"idempotent":true,"tag":"x"}`, `{"tag":"x","idempotent":true}`},
		{"metadata not idempotent", parseMetadata, `{"idempotent":false}`, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.parse([]byte(tc.in))
			if err != nil || string(got) != tc.want {
				t.Fatalf("parse(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func([]byte) ([]byte, error)
		in    string
		want  string // in the message
	}{
		{"events null", parseEvents, `null`, "Invalid events: want an array"},
		{"events not an array", parseEvents, `{"type":"mqtt"}`, "Invalid events: "},
		{"events other type", parseEvents, `[{"type":"kafka","params":{"host":"b","port":1,"topic":"t"}}]`, `type "kafka" is not supported`},
		{"events no params", parseEvents, `[{"type":"mqtt"}]`, "params are missing"},
		{"events no host", parseEvents, `[{"type":"mqtt","params":{"port":1883,"topic":"t"}}]`, "params.host is missing"},
		{"events no port", parseEvents, `[{"type":"mqtt","params":{"host":"b","topic":"t"}}]`, "params.port is missing"},
		{"events port zero", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":"0","topic":"t"}}]`, "port number from 1 to 65535"},
		{"events port too big", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":65536,"topic":"t"}}]`, "port number from 1 to 65535"},
		{"events fractional port", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":1883.5,"topic":"t"}}]`, "port number from 1 to 65535"},
		{"events port word", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":"mqtt","topic":"t"}}]`, "port number from 1 to 65535"},
		{"events no topic", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":1883}}]`, "params.topic is missing"},
		{"events bad filter", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"a/#/b"}}]`, "not a valid MQTT topic filter"},
		{"timer bad cron", parseEvents, `[{"type":"timer","params":{"cron":"61 * * * *"}}]`, `event 0: params.cron "61 * * * *": minute field "61": 61 is outside 0-59`},
		{"timer cron fields", parseEvents, `[{"type":"timer","params":{"cron":"* * *"}}]`, `params.cron "* * *": want 5 fields`},
		{"timer cron never", parseEvents, `[{"type":"timer","params":{"cron":"0 0 30 2 *"}}]`, "never occurs"},
		{"timer cron not a string", parseEvents, `[{"type":"timer","params":{"cron":5}}]`, "Invalid events: "},
		{"timer every too short", parseEvents, `[{"type":"timer","params":{"every":"500ms"}}]`, `params.every "500ms": 500ms is shorter than the minimum of 1s`},
		{"timer every too long", parseEvents, `[{"type":"timer","params":{"every":"800h"}}]`, "longer than the maximum"},
		{"timer every word", parseEvents, `[{"type":"timer","params":{"every":"often"}}]`, `params.every "often": "often" is not a duration`},
		{"timer both", parseEvents, `[{"type":"timer","params":{"every":"1s","cron":"* * * * *"}}]`, "not both"},
		{"timer neither", parseEvents, `[{"type":"timer","params":{"local":true}}]`, "needs params.cron or params.every"},
		{"timer with topic", parseEvents, `[{"type":"timer","params":{"every":"1s","topic":"t"}}]`, "not host, port or topic"},
		{"mqtt with cron", parseEvents, `[{"type":"mqtt","params":{"topic":"t","local":true,"cron":"* * * * *"}}]`, "takes no cron or every"},
		{"timer unknown key", parseEvents, `[{"type":"timer","params":{"every":"1s","jitter":"1s"}}]`, "unknown field"},
		{"too many timers", parseEvents, "[" + strings.Repeat(`{"type":"timer","params":{"every":"1s"}},`, MaxTimers) + `{"type":"timer","params":{"every":"1s"}}]`, "more than 16 timers"},
		{"events unknown key", parseEvents, `[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"t","qos":1}}]`, "unknown field"},
		{"sinks other type", parseSinks, `[{"type":"s3","params":{"url":"http://c/db"}}]`, `sink 0: type "s3" is not supported`},
		{"sinks bad url", parseSinks, `[{"type":"couchdb","params":{"url":"ftp://c/db"}}]`, "params.url must be an http or https URL"},
		{"metadata not an object", parseMetadata, `null`, "Invalid metadata: want an object"},
		{"metadata idempotent word", parseMetadata, `{"idempotent":"yes"}`, "Invalid metadata: "},
		{"metadata negative capacity", parseMetadata, `{"capacity":-1}`, "capacity must be a whole number of KiB"},
		{"metadata trailing data", parseMetadata, `{} {}`, "unexpected data after the JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.parse([]byte(tc.in))
			var fe *Error
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parse(%s) = %v; want an ErrInvalid containing %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestSpecRoundTrip: what Encode writes, Decode reads back as it was; an
// absent setting is written as nil.
func TestSpecRoundTrip(t *testing.T) {
	capacity := int64(256)
	spec := Spec{
		Events: []Event{{Type: "mqtt", Params: EventParams{Host: "b", Port: 1883, Topic: "a/#"}}, {Type: "mqtt", Params: EventParams{Topic: "x", Local: true}},
			{Type: "timer", Params: EventParams{Cron: "*/5 * * * *"}}, {Type: "timer", Params: EventParams{Every: "1s", Local: true}}},
		Sinks:    []Sink{{Type: "couchdb", Params: SinkParams{URL: "http://c:5984/db", Username: "u", Password: "p"}}},
		Metadata: Metadata{Tag: "t", Capacity: &capacity, Idempotent: true},
		Config:   Config{Env: map[string]string{"A": "1", "B": "x y"}, Secrets: []string{"KEY"}, AllowHosts: []string{"*.example.com", "api.test:8443"}},
	}
	ev, sk, md, cf := spec.Encode()
	got, err := Decode(ev, sk, md, cf)
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(spec)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Fatalf("round trip = %s, want %s", gotJSON, wantJSON)
	}
	if ev, sk, md, cf := (Spec{}).Encode(); ev != nil || sk != nil || md != nil || cf != nil {
		t.Fatalf("zero Spec encodes to %q %q %q %q, want nils", ev, sk, md, cf)
	}
	if got, err := Decode(nil, nil, nil, nil); err != nil || got.Events != nil || got.Sinks != nil || got.Metadata != (Metadata{}) || !got.Config.IsZero() {
		t.Fatalf("Decode of nothing = %+v, %v", got, err)
	}
}

// TestDecodeUnreadable: a field that does not parse is zero and named in
// the error; the others are read.
func TestDecodeUnreadable(t *testing.T) {
	ev, _, _, _ := Spec{Events: []Event{{Type: "mqtt", Params: EventParams{Topic: "x", Local: true}}}}.Encode()
	got, err := Decode(ev, []byte(`[{"type":"ftp"}]`), []byte(`{"tag":`), []byte(`{"allow_hosts":["a b"]}`))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Invalid sinks") || !strings.Contains(err.Error(), "Invalid metadata") || !strings.Contains(err.Error(), "Invalid config") {
		t.Fatalf("err = %v, want one naming sinks, metadata and config", err)
	}
	if len(got.Events) != 1 || got.Sinks != nil || got.Metadata != (Metadata{}) || !got.Config.IsZero() {
		t.Fatalf("got %+v, want the events only", got)
	}
}

func TestSinkCopies(t *testing.T) {
	s := Sink{Type: "couchdb", Params: SinkParams{URL: "http://c/db", Password: "secret"}}
	got, err := DecodeSink(EncodeSink(s))
	if err != nil || got != s {
		t.Fatalf("DecodeSink(EncodeSink(s)) = %+v, %v", got, err)
	}
	if _, err := DecodeSink([]byte(`{"type":"couchdb"}`)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("DecodeSink without params = %v, want ErrInvalid", err)
	}
	if r := s.Redacted(); r.Params.Password != Redacted || s.Params.Password != "secret" {
		t.Fatalf("Redacted = %+v (and the original %+v)", r, s)
	}
}

func TestLocalTopics(t *testing.T) {
	evs := []Event{{Type: "mqtt", Params: EventParams{Host: "b", Port: 1, Topic: "cloud"}}, {Type: "mqtt", Params: EventParams{Topic: "edge/#", Local: true}}}
	if got := LocalTopics(evs); len(got) != 1 || got[0] != "edge/#" {
		t.Fatalf("LocalTopics = %v", got)
	}
}

// fuzzParser checks that a field parser never panics, fails only with
// ErrInvalid, and that its output is valid JSON it parses to itself.
func fuzzParser(f *testing.F, parse func([]byte) ([]byte, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := parse(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
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
		again, err := parse(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}

func FuzzParseEvents(f *testing.F) {
	fuzzParser(f, parseEvents,
		`[{"type":"mqtt","params":{"host":"b","port":"1883","topic":"t"}}]`,
		`[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"t"}}]`,
		`[{"type":"mqtt","params":{"topic":"a/+/#","local":true,"port":1e3}}]`,
		`[]`, `null`, `{"a":1}`, `[{"type":"mqtt","params":{"host":"b","port":"0x10","topic":"t"}}]`,
		`[{"type":"timer","params":{"cron":"*/5 1-3 * JAN SUN","local":true}}]`, `[{"type":"timer","params":{"every":"1m30s"}}]`)
}

func FuzzParseSinks(f *testing.F) {
	fuzzParser(f, parseSinks,
		`[{"type":"couchdb","params":{"url":"http://c:5984/db","username":"u","password":"p"}}]`,
		`[]`, `[{"type":"couchdb","params":{"url":"ftp://x"}}]`)
}

func FuzzParseMetadata(f *testing.F) {
	fuzzParser(f, parseMetadata, `{"tag":"t","capacity":1024}`, `{}`, `{"capacity":1e3}`, `{"capacity":"12"}`, `null`, `{"idempotent":true}`)
}
