package protocol

import (
	"strings"
	"testing"
)

func TestIsDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	for s, want := range map[string]bool{
		good:                      true,
		strings.ToUpper(good):     false,
		good[:len(good)-1]:        false,
		good + "0":                false,
		"sha512:" + good[7:]:      false,
		good[:len(good)-1] + "g":  false,
		"":                        false,
		good[:len(good)-1] + "\n": false,
	} {
		if IsDigest(s) != want {
			t.Errorf("IsDigest(%q) = %v", s, !want)
		}
	}
}
