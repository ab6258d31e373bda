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
