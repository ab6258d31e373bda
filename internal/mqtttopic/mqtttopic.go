// Package mqtttopic holds MQTT 3.1.1's topic-filter rules (§4.7), used by
// the controller's cloud events (controller/events) and the agent's
// edge-local triggers (agent/triggers) alike, so that both accept and match
// the same filters. Filters travel to agents as plain strings
// (protocol.DesiredFunction.LocalTopics); the protocol does not interpret
// them.
//
// It imports only the standard library (internal/archtest).
package mqtttopic

import "strings"

// ValidFilter reports whether f is a topic filter MQTT 3.1.1 allows
// (§4.7): non-empty, at most 65535 bytes, no NUL, '#' only as the whole last
// level, '+' only as a whole level. A broker disconnects a client that
// subscribes to an invalid filter, so filters are checked before they
// reach one.
func ValidFilter(f string) bool {
	if f == "" || len(f) > 65535 || strings.ContainsRune(f, 0) {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// Match reports whether topic name t matches filter f. Wildcards at the
// first level do not match topics starting with '$' (§4.7.2), and "a/#"
// also matches "a" (# includes the parent level).
func Match(f, t string) bool {
	if strings.HasPrefix(t, "$") && (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			return fmore == tmore || (fmore && frest == "#")
		}
		f, t = frest, trest
	}
}
