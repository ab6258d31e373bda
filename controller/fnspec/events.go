package fnspec

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/wispfn/wisp/internal/mqtttopic"
)

// Event is one trigger of a function. Only MQTT exists. Its JSON is
// FunLess's: {"type":"mqtt","params":{"host":"h","port":1883,"topic":"t"}}.
type Event struct {
	Type   string      `json:"type"` // "mqtt"
	Params EventParams `json:"params"`
}

// EventParams are an MQTT subscription's. Port is a number (FunLess also
// accepts a string on input). Local (Wisp's addition) makes it an
// edge-local trigger: every agent that holds the function subscribes on
// its own broker (--mqtt-broker), so it fires during a partition; Host and
// Port are then empty.
type EventParams struct {
	Host  string `json:"host,omitempty"`
	Port  int    `json:"port,omitempty"`
	Topic string `json:"topic"` // an MQTT topic filter: + and # are allowed
	Local bool   `json:"local,omitempty"`
}

// ParseEvents parses an events field:
// [{"type":"mqtt","params":{"host":"h","port":1883|"1883","topic":"t"}}]
// or, for an edge-local trigger, [{"type":"mqtt","params":{"topic":"t","local":true}}].
// Empty means no events (nil).
//
// # Errors
//
// An *Error (wrapping ErrInvalid) for malformed JSON, unknown keys, a type
// other than "mqtt", missing params or topic, a topic that is not an MQTT
// topic filter, and for a cloud event a missing host or a port outside
// 1..65535.
func ParseEvents(raw []byte) ([]Event, error) {
	if absent(raw) {
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
		return nil, invalid("events", "want an array of events")
	}
	out := make([]Event, 0, len(in))
	for i, e := range in {
		if e.Type != "mqtt" {
			return nil, invalid("events", "event %d: type %q is not supported (want \"mqtt\")", i, e.Type)
		}
		if e.Params == nil {
			return nil, invalid("events", "event %d: params are missing", i)
		}
		p := e.Params
		if p.Topic == "" {
			return nil, invalid("events", "event %d: params.topic is missing", i)
		}
		if !mqtttopic.ValidFilter(p.Topic) {
			return nil, invalid("events", "event %d: params.topic %q is not a valid MQTT topic filter", i, p.Topic)
		}
		if p.Local {
			out = append(out, Event{Type: e.Type, Params: EventParams{Topic: p.Topic, Local: true}})
			continue
		}
		host := strings.TrimSpace(p.Host)
		if host == "" {
			return nil, invalid("events", "event %d: params.host is missing", i)
		}
		port, err := parsePort(p.Port)
		if err != nil {
			return nil, invalid("events", "event %d: params.port %s", i, err)
		}
		out = append(out, Event{Type: e.Type, Params: EventParams{Host: host, Port: port, Topic: p.Topic}})
	}
	return out, nil
}

// parsePort accepts 1883 or "1883".
func parsePort(raw json.RawMessage) (int, error) {
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

// LocalTopics returns the topic filters of the edge-local events, in order.
func LocalTopics(events []Event) []string {
	var out []string
	for _, e := range events {
		if e.Params.Local {
			out = append(out, e.Params.Topic)
		}
	}
	return out
}
