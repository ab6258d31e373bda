package api

import "strings"

// MaxNameLen is the longest module, function, subject or script name.
const MaxNameLen = 160

// nameOK reports whether name is only letters, digits and underscores
// (ASCII; a byte loop: names are checked on every invocation).
func nameOK(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// checkName enforces FunLess's naming rule. what is "module", "function"...
func checkName(what, name string) error {
	if len(name) == 0 || len(name) > MaxNameLen || !nameOK(name) {
		return fail(ErrInvalidName, "Invalid %s name: must be 1 to %d characters among letters, digits and underscores", what, MaxNameLen)
	}
	return nil
}

// parseBool reads wait_for_workers: true/false/1/0 (any case); empty is false.
func parseBool(field, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, fail(ErrBadRequest, "Invalid %s: want true, false, 1 or 0", field)
}
