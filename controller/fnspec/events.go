package fnspec

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/wispfn/wisp/internal/cron"
	"github.com/wispfn/wisp/internal/mqtttopic"
)

// Event is one trigger of a function: an MQTT subscription (FunLess's:
// {"type":"mqtt","params":{"host":"h","port":1883,"topic":"t"}}) or a
// timer (Wisp's: {"type":"timer","params":{"cron":"*/5 * * * *"}} or
// {"type":"timer","params":{"every":"30s"}}).
type Event struct {
	Type   string      `json:"type"` // EventMQTT or EventTimer
	Params EventParams `json:"params"`
}

// Event types.
const (
	EventMQTT  = "mqtt"
	EventTimer = "timer"
)

// MaxTimers bounds the timer events of one function.
const MaxTimers = 16

// EventParams are an MQTT subscription's or a timer's. Port is a number
// (FunLess also accepts a string on input). Local (Wisp's addition) makes
// it an edge-local trigger: every agent that holds the function
// subscribes on its own broker (--mqtt-broker), or runs the timer itself,
// so it fires during a partition; Host and Port are then empty. A timer
// has exactly one of Cron (five fields, UTC; internal/cron) and Every (a
// Go duration, 1s to 744h, whole milliseconds); without Local the
// controller runs it.
type EventParams struct {
	Host  string `json:"host,omitempty"`
	Port  int    `json:"port,omitempty"`
	Topic string `json:"topic,omitempty"` // an MQTT topic filter: + and # are allowed
	Cron  string `json:"cron,omitempty"`
	Every string `json:"every,omitempty"`
	Local bool   `json:"local,omitempty"`
}

// ParseEvents parses an events field:
// [{"type":"mqtt","params":{"host":"h","port":1883|"1883","topic":"t"}}]
// or, for an edge-local trigger, [{"type":"mqtt","params":{"topic":"t","local":true}}];
// timers are [{"type":"timer","params":{"cron":"0 * * * *"|"every":"30s","local":true|false}}].
// Empty means no events (nil).
//
// # Errors
//
// An *Error (wrapping ErrInvalid) for malformed JSON, unknown keys, a type
// other than "mqtt" and "timer", missing params, for MQTT a missing topic,
// a topic that is not an MQTT topic filter, and for a cloud event a
// missing host or a port outside 1..65535; for a timer, MQTT params, none
// or both of cron and every, a cron expression or a duration that
// internal/cron refuses, and more than MaxTimers timers.
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
			Cron  *string         `json:"cron"`
			Every *string         `json:"every"`
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
	timers := 0
	for i, e := range in {
		if e.Type != EventMQTT && e.Type != EventTimer {
			return nil, invalid("events", "event %d: type %q is not supported (want \"mqtt\" or \"timer\")", i, e.Type)
		}
		if e.Params == nil {
			return nil, invalid("events", "event %d: params are missing", i)
		}
		p := e.Params
		if e.Type == EventTimer {
			if timers++; timers > MaxTimers {
				return nil, invalid("events", "more than %d timers", MaxTimers)
			}
			if p.Host != "" || len(p.Port) > 0 || p.Topic != "" {
				return nil, invalid("events", "event %d: a timer takes params cron or every (and local), not host, port or topic", i)
			}
			ev, err := parseTimer(i, p.Cron, p.Every, p.Local)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
			continue
		}
		if p.Cron != nil || p.Every != nil {
			return nil, invalid("events", "event %d: an mqtt event takes no cron or every (use type \"timer\")", i)
		}
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

// parseTimer checks a timer event's params: exactly one of cron and
// every, each as internal/cron reads it. The cron expression is kept with
// its fields separated by single spaces.
func parseTimer(i int, cronExpr, every *string, local bool) (Event, error) {
	switch {
	case cronExpr == nil && every == nil:
		return Event{}, invalid("events", "event %d: a timer needs params.cron or params.every", i)
	case cronExpr != nil && every != nil:
		return Event{}, invalid("events", "event %d: a timer takes params.cron or params.every, not both", i)
	case cronExpr != nil:
		c, err := cron.Parse(*cronExpr)
		if err != nil {
			return Event{}, invalid("events", "event %d: params.cron %q: %s", i, truncate(*cronExpr), reason(err))
		}
		return Event{Type: EventTimer, Params: EventParams{Cron: c.String(), Local: local}}, nil
	}
	iv, err := cron.ParseEvery(*every)
	if err != nil {
		return Event{}, invalid("events", "event %d: params.every %q: %s", i, truncate(*every), reason(err))
	}
	return Event{Type: EventTimer, Params: EventParams{Every: iv.String(), Local: local}}, nil
}

// reason is a cron error without its "invalid schedule: " prefix.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), cron.ErrInvalid.Error()+": ")
}

// truncate bounds a user's value quoted back in an error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Schedule returns a timer event's schedule (nil, false for another
// event, or a timer whose stored params do not parse).
func (e Event) Schedule() (cron.Schedule, bool) {
	if e.Type != EventTimer {
		return nil, false
	}
	if e.Params.Cron != "" {
		c, err := cron.Parse(e.Params.Cron)
		return c, err == nil
	}
	iv, err := cron.ParseEvery(e.Params.Every)
	return iv, err == nil
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

// LocalTopics returns the topic filters of the edge-local MQTT events, in order.
func LocalTopics(events []Event) []string {
	var out []string
	for _, e := range events {
		if e.Type == EventMQTT && e.Params.Local {
			out = append(out, e.Params.Topic)
		}
	}
	return out
}

// Timers returns the timer events that are edge-local (local true) or
// cloud timers (local false), in order.
func Timers(events []Event, local bool) []Event {
	var out []Event
	for _, e := range events {
		if e.Type == EventTimer && e.Params.Local == local {
			out = append(out, e)
		}
	}
	return out
}
