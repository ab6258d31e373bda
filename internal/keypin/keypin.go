// Package keypin is the text form of a certificate key fingerprint and the
// TLS client check that pins one: how the wisp CLI and `wisp-controller
// token create` trust a controller's self-signed REST certificate without
// a CA.
//
// A fingerprint is the sha256 of the certificate's public key
// (protocol.KeyFingerprint, the very value join tokens carry for QUIC),
// written "sha256:" followed by 64 lowercase hex digits. Pinning the key
// rather than the certificate survives a renewal with the same key.
//
// It imports only the standard library and protocol (internal/archtest), so
// any binary can link it. It must never fall back to trusting a certificate
// whose key does not match the pin.
package keypin

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/wispfn/wisp/protocol"
)

// Prefix starts a fingerprint's text form.
const Prefix = "sha256:"

// ErrMismatch: the server's key is not the pinned one.
var ErrMismatch = errors.New("the server's key fingerprint is not the pinned one")

// Fingerprint is the sha256 of a certificate's SubjectPublicKeyInfo.
type Fingerprint [32]byte

// Of is the fingerprint of cert's key.
func Of(cert *x509.Certificate) Fingerprint { return protocol.KeyFingerprint(cert) }

// String is the text form, "sha256:<64 hex digits>".
func (f Fingerprint) String() string { return Prefix + hex.EncodeToString(f[:]) }

// Parse reads the text form. Upper-case hex and colons between bytes (as
// openssl prints them) are accepted; the "sha256:" prefix is required, so
// that a fingerprint of another hash is never misread.
func Parse(s string) (Fingerprint, error) {
	var f Fingerprint
	rest, ok := strings.CutPrefix(strings.TrimSpace(strings.ToLower(s)), Prefix)
	if !ok {
		return f, fmt.Errorf("fingerprint %q: want %s followed by 64 hex digits", s, Prefix)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(rest, ":", ""))
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("fingerprint %q: want %s followed by 64 hex digits", s, Prefix)
	}
	copy(f[:], b)
	return f, nil
}

// Verify is a tls.Config.VerifyConnection that accepts only a server whose
// leaf certificate has the pinned key. The error names both fingerprints
// and wraps ErrMismatch.
func Verify(pin Fingerprint) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server sent no certificate")
		}
		got := Of(cs.PeerCertificates[0])
		if subtle.ConstantTimeCompare(got[:], pin[:]) != 1 {
			return fmt.Errorf("%w: it presented %s, the pin is %s", ErrMismatch, got, pin)
		}
		return nil
	}
}

// ClientConfig is a TLS client configuration that trusts exactly the
// server whose key has the fingerprint pin: no CA and no host name are
// checked, the key is.
func ClientConfig(pin Fingerprint) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection:   Verify(pin),
	}
}
