package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/wispfn/wisp/protocol"
)

// Identity is the controller's own key and self-signed certificate, made on
// first start and kept in the data dir. Agents pin the key's fingerprint
// (from their join token), so no CA is involved. Several controllers behind
// one load balancer share it by sharing the two files (a Kubernetes Secret).
type Identity struct {
	Cert        tls.Certificate
	Fingerprint [32]byte
}

const (
	certFile = "controller.crt"
	keyFile  = "controller.key"
)

// LoadOrCreateIdentity reads dir/controller.{crt,key}, creating them (key
// 0600) when both are absent. One present without the other is an error, as
// is a certificate that does not match its key.
func LoadOrCreateIdentity(dir string) (Identity, error) {
	cp, kp := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	certPEM, cerr := os.ReadFile(cp)
	keyPEM, kerr := os.ReadFile(kp)
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		var err error
		if certPEM, keyPEM, err = newSelfSigned(); err != nil {
			return Identity{}, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return Identity{}, err
		}
		if err := os.WriteFile(kp, keyPEM, 0o600); err != nil {
			return Identity{}, err
		}
		if err := os.WriteFile(cp, certPEM, 0o644); err != nil {
			return Identity{}, err
		}
	case cerr != nil:
		return Identity{}, fmt.Errorf("controller certificate: %w", cerr)
	case kerr != nil:
		return Identity{}, fmt.Errorf("controller key: %w", kerr)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("controller identity in %s: %w", dir, err)
	}
	return Identity{Cert: cert, Fingerprint: protocol.KeyFingerprint(cert.Leaf)}, nil
}

func newSelfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "wisp-controller"},
		DNSNames:              []string{"wisp-controller"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
