package api

import (
	"errors"
	"testing"
)

func TestParseBool(t *testing.T) {
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

// TestCheckName: letters, digits and underscores, 1 to MaxNameLen of them,
// nothing else (non-ASCII letters, separators, NUL included).
func TestCheckName(t *testing.T) {
	long := make([]byte, MaxNameLen)
	for i := range long {
		long[i] = 'a'
	}
	for _, ok := range []string{"a", "_", "Z9", "hello_world", "0", string(long)} {
		if err := checkName("function", ok); err != nil {
			t.Errorf("checkName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a-b", "a.b", "a/b", "a b", "é", "a\x00", "ß", "a\n", string(long) + "a"} {
		if err := checkName("function", bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("checkName(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
}
