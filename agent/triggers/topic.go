package triggers

import "strings"

// validFilter reports whether f is a topic filter MQTT 3.1.1 allows (§4.7).
// A broker disconnects a client that subscribes to an invalid one.
// (The same rules as controller/events, which this package must not import.)
func validFilter(f string) bool {
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

// matchTopic reports whether topic name t matches filter f.
func matchTopic(f, t string) bool {
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
