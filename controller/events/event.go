package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Event is one entry of a function's FunLess "events" field.
type Event struct {
	Type  string // always "mqtt" today
	Host  string
	Port  int
	Topic string
	// Local marks an edge-local trigger (params "local": true): agents run it
	// on their own broker, the controller never does, and Host and Port may be
	// empty.
	Local bool
}

// Binding is one cloud-side subscription: messages on Topic at Host:Port
// invoke Module/Function.
type Binding struct {
	Module, Function string
	Host             string
	Port             int
	Topic            string // an MQTT topic filter; + and # wildcards are allowed
}

// Broker returns "host:port", the key under which bindings share a connection.
func (b Binding) Broker() string {
	return joinHostPort(b.Host, b.Port)
}

func (b Binding) String() string {
	return fmt.Sprintf("%s/%s <- mqtt://%s/%s", b.Module, b.Function, b.Broker(), b.Topic)
}

// Binding returns the subscription of a cloud event for module/function.
func (e Event) Binding(module, function string) Binding {
	return Binding{Module: module, Function: function, Host: e.Host, Port: e.Port, Topic: e.Topic}
}

// ParseEvents decodes a FunLess "events" field: a JSON array of
// {"type":"mqtt","params":{...}}. An empty field (or JSON null) is no events.
//
// # Errors
//
// Anything that cannot be subscribed to is an error wrapping ErrInvalidEvent:
// malformed JSON, a type other than "mqtt", a missing topic, an invalid topic
// filter, and for cloud events a missing host or a port outside 1..65535.
func ParseEvents(data []byte) ([]Event, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return nil, nil
	}
	var raw []struct {
		Type   string `json:"type"`
		Params struct {
			Host  string          `json:"host"`
			Port  json.RawMessage `json:"port"`
			Topic string          `json:"topic"`
			Local bool            `json:"local"`
		} `json:"params"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	out := make([]Event, 0, len(raw))
	for i, r := range raw {
		if r.Type != "mqtt" {
			return nil, fmt.Errorf("%w: events[%d]: type %q is not supported (only \"mqtt\")", ErrInvalidEvent, i, r.Type)
		}
		e := Event{Type: r.Type, Host: strings.TrimSpace(r.Params.Host), Topic: r.Params.Topic, Local: r.Params.Local}
		if !validFilter(e.Topic) {
			return nil, fmt.Errorf("%w: events[%d]: topic %q is not a valid MQTT topic filter", ErrInvalidEvent, i, e.Topic)
		}
		port, err := parsePort(r.Params.Port)
		if err != nil {
			return nil, fmt.Errorf("%w: events[%d]: %w", ErrInvalidEvent, i, err)
		}
		e.Port = port
		if !e.Local {
			if e.Host == "" {
				return nil, fmt.Errorf("%w: events[%d]: host is required", ErrInvalidEvent, i)
			}
			if e.Port == 0 {
				return nil, fmt.Errorf("%w: events[%d]: port is required", ErrInvalidEvent, i)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// parsePort accepts a JSON number or a JSON string holding one; absent is 0.
func parsePort(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, fmt.Errorf("port %s is neither a number nor a string", raw)
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
		f = float64(n)
	}
	if f != math.Trunc(f) || f < 1 || f > 65535 {
		return 0, fmt.Errorf("port %s is outside 1..65535", raw)
	}
	return int(f), nil
}
