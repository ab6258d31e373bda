package keypin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestParse(t *testing.T) {
	f := Fingerprint{0xab, 0x01}
	s := f.String()
	if !strings.HasPrefix(s, "sha256:ab01") || len(s) != len("sha256:")+64 {
		t.Fatalf("String = %q", s)
	}
	for _, in := range []string{s, strings.ToUpper(s), " " + s + "\n", "sha256:AB:01" + strings.Repeat(":00", 30)} {
		if got, err := Parse(in); err != nil || got != f {
			t.Errorf("Parse(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", s[len("sha256:"):], "sha1:" + s[7:], s[:len(s)-2], s + "00", "sha256:" + strings.Repeat("zz", 32)} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

// TestClientConfig: a real TLS handshake succeeds with the server's pin and
// fails, naming both fingerprints, with another.
func TestClientConfig(t *testing.T) {
	cert, other := selfSigned(t), selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(pin Fingerprint) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), ClientConfig(pin))
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(Of(cert.Leaf)); err != nil {
		t.Fatalf("pinned handshake: %v", err)
	}
	err = dial(Of(other.Leaf))
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), Of(cert.Leaf).String()) || !strings.Contains(err.Error(), Of(other.Leaf).String()) {
		t.Fatalf("wrong pin: %v", err)
	}
}
