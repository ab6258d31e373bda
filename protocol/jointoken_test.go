package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	tok := JoinToken{Secret: bytes.Repeat([]byte{7}, 32)}
	tok.Fingerprint[0], tok.Fingerprint[31] = 1, 2
	got, err := ParseJoinToken(" " + tok.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint != tok.Fingerprint || !bytes.Equal(got.Secret, tok.Secret) {
		t.Fatalf("%+v != %+v", got, tok)
	}
	if !strings.HasPrefix(tok.String(), "wispjoin1.") {
		t.Fatal(tok.String())
	}
}

func TestJoinTokenRejects(t *testing.T) {
	good := JoinToken{Secret: bytes.Repeat([]byte{7}, 32)}.String()
	for name, s := range map[string]string{
		"empty":        "",
		"other prefix": "wispjoin2." + strings.TrimPrefix(good, "wispjoin1."),
		"no secret":    good[:strings.LastIndex(good, ".")],
		"short fp":     "wispjoin1.AAAA." + good[strings.LastIndex(good, ".")+1:],
		"short secret": good[:strings.LastIndex(good, ".")] + ".AAAA",
		"bad base64":   good + "!",
	} {
		if _, err := ParseJoinToken(s); !errors.Is(err, ErrBadJoinToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add(JoinToken{Secret: bytes.Repeat([]byte{7}, 32)}.String())
	f.Add("wispjoin1..")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		again, err := ParseJoinToken(tok.String())
		if err != nil || again.Fingerprint != tok.Fingerprint || !bytes.Equal(again.Secret, tok.Secret) {
			t.Fatalf("round trip of %q failed: %v", s, err)
		}
	})
}
