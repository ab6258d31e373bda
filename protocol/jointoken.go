package protocol

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// A join token lets a new agent join a controller. It carries two things:
// the fingerprint of the controller's public key, which the agent pins (so
// it needs no CA and cannot be fooled by another server), and a secret the
// agent presents once in Hello.JoinSecret. The controller keeps only the
// secret's sha256.
//
// Text form: "wispjoin1." + base64url(fingerprint, 32 bytes) + "." +
// base64url(secret, 32 bytes), no padding. The version prefix changes if
// the form ever does.
const joinTokenPrefix = "wispjoin1."

// ErrBadJoinToken: the text is not a join token.
var ErrBadJoinToken = errors.New("malformed join token")

// JoinToken is a parsed join token.
type JoinToken struct {
	Fingerprint [32]byte // sha256 of the controller's SubjectPublicKeyInfo
	Secret      []byte
}

// String renders the token's text form.
func (t JoinToken) String() string {
	enc := base64.RawURLEncoding
	return joinTokenPrefix + enc.EncodeToString(t.Fingerprint[:]) + "." + enc.EncodeToString(t.Secret)
}

// ParseJoinToken parses the text form.
func ParseJoinToken(s string) (JoinToken, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), joinTokenPrefix)
	if !ok {
		return JoinToken{}, fmt.Errorf("%w: it must start with %q", ErrBadJoinToken, joinTokenPrefix)
	}
	fp, secret, ok := strings.Cut(rest, ".")
	if !ok {
		return JoinToken{}, fmt.Errorf("%w: missing secret", ErrBadJoinToken)
	}
	enc := base64.RawURLEncoding
	f, err := enc.DecodeString(fp)
	if err != nil || len(f) != 32 {
		return JoinToken{}, fmt.Errorf("%w: bad fingerprint", ErrBadJoinToken)
	}
	sec, err := enc.DecodeString(secret)
	if err != nil || len(sec) < 16 {
		return JoinToken{}, fmt.Errorf("%w: bad secret", ErrBadJoinToken)
	}
	var t JoinToken
	copy(t.Fingerprint[:], f)
	t.Secret = sec
	return t, nil
}

// KeyFingerprint returns the sha256 of a certificate's public key (its
// SubjectPublicKeyInfo), what agents pin: it survives certificate renewal
// with the same key.
func KeyFingerprint(cert *x509.Certificate) [32]byte {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}
