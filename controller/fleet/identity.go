package fleet

import (
	"bytes"
	"context"
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
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/internal/sealbox"
	"github.com/wispfn/wisp/protocol"
)

// Identity is the controller's key and self-signed certificate. Agents pin
// the key's fingerprint (from their join tokens), so no CA is involved;
// the REST API serves the same certificate when it has no operator's
// (the CLI pins it too). A controller on the embedded store keeps it in
// its data dir (LoadOrCreateIdentity); the controllers of a cluster on
// Postgres share one through the store (SharedIdentity).
type Identity struct {
	Cert        tls.Certificate
	Fingerprint [32]byte
}

// String is the identity's key fingerprint as people and the CLI write
// it: sha256:<64 hex>.
func (id Identity) String() string { return keypin.Fingerprint(id.Fingerprint).String() }

const (
	certFile = "controller.crt"
	keyFile  = "controller.key"
)

// LoadOrCreateIdentity reads dir/controller.{crt,key}, creating them (key
// 0600) when both are absent. One present without the other is an error, as
// is a certificate that does not match its key.
func LoadOrCreateIdentity(dir string) (Identity, error) {
	certPEM, keyPEM, found, err := readIdentityFiles(dir)
	if err != nil {
		return Identity{}, err
	}
	if !found {
		if certPEM, keyPEM, err = newSelfSigned(); err != nil {
			return Identity{}, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return Identity{}, err
		}
		if err := os.WriteFile(filepath.Join(dir, keyFile), keyPEM, 0o600); err != nil {
			return Identity{}, err
		}
		if err := os.WriteFile(filepath.Join(dir, certFile), certPEM, 0o644); err != nil {
			return Identity{}, err
		}
	}
	id, err := parseIdentity(certPEM, keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("controller identity in %s: %w", dir, err)
	}
	return id, nil
}

// readIdentityFiles reads dir/controller.{crt,key}; found is false when
// both are absent, and one without the other is an error.
func readIdentityFiles(dir string) (certPEM, keyPEM []byte, found bool, err error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, certFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, keyFile))
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		return nil, nil, false, nil
	case cerr != nil:
		return nil, nil, false, fmt.Errorf("controller certificate: %w", cerr)
	case kerr != nil:
		return nil, nil, false, fmt.Errorf("controller key: %w", kerr)
	}
	return certPEM, keyPEM, true, nil
}

func parseIdentity(certPEM, keyPEM []byte) (Identity, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Cert: cert, Fingerprint: protocol.KeyFingerprint(cert.Leaf)}, nil
}

// IdentityStore keeps the cluster's identity: store.Postgres does (see
// its StoreIdentity, LoadIdentity and RewrapIdentity).
type IdentityStore interface {
	StoreIdentity(ctx context.Context, id store.SealedIdentity) (store.SealedIdentity, error)
	LoadIdentity(ctx context.Context) (store.SealedIdentity, error)
	RewrapIdentity(ctx context.Context, keyID string, sealed, prev []byte) (bool, error)
}

var (
	// ErrIdentityMismatch: the data dir holds another identity than the
	// cluster's.
	ErrIdentityMismatch = errors.New("the data dir's controller identity is not the cluster's")
	// ErrIdentitySealed: the cluster's identity does not open with this
	// controller's secrets key.
	ErrIdentitySealed = errors.New("the cluster's controller identity does not open with this controller's secrets key")
)

// identityAAD binds the sealed key to its place.
var identityAAD = []byte("wisp cluster identity\x00controller")

// SharedIdentity returns the identity every controller of a cluster on
// one Postgres serves, by these rules:
//
//   - None stored yet (the cluster's first start): the data dir's
//     controller.crt/.key when there are (so agents that pinned it keep
//     working), else a new one, is stored with its key sealed by ring's
//     current key. Two controllers doing this at once both read back the
//     one the database kept.
//   - One stored: it is used, and copied into a data dir that holds none
//     (controller.crt/.key, as a lone controller keeps its own), for what
//     reads it there.
//   - A data dir holding another key than the stored one: ErrIdentityMismatch,
//     naming both fingerprints (agents pinned one of them; the controller
//     must not start with the other).
//   - A stored key that ring cannot open: ErrIdentitySealed (the cluster's
//     controllers must share the secrets key), unless the data dir holds
//     that very identity (a mounted Secret): it is served, with a warning.
//
// A stored key sealed by an older key of ring is sealed again under the
// current one (ResealIdentity), so that old keys can be dropped after a
// rotation.
func SharedIdentity(ctx context.Context, st IdentityStore, dir string, ring *sealbox.Ring, log *slog.Logger) (Identity, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	localCert, localKey, local, err := readIdentityFiles(dir)
	if err != nil {
		return Identity{}, err
	}
	var localID Identity
	if local {
		if localID, err = parseIdentity(localCert, localKey); err != nil {
			return Identity{}, fmt.Errorf("controller identity in %s: %w", dir, err)
		}
	}
	stored, err := st.LoadIdentity(ctx)
	if errors.Is(err, store.ErrNotFound) {
		certPEM, keyPEM := localCert, localKey
		if !local {
			if certPEM, keyPEM, err = newSelfSigned(); err != nil {
				return Identity{}, err
			}
		}
		keyID, sealed := ring.Seal(keyPEM, identityAAD)
		if stored, err = st.StoreIdentity(ctx, store.SealedIdentity{CertPEM: certPEM, KeyID: keyID, SealedKey: sealed}); err != nil {
			return Identity{}, err
		}
		if bytes.Equal(stored.SealedKey, sealed) {
			from := "made now"
			if local {
				from = "from " + filepath.Join(dir, certFile)
			}
			log.Info("stored the cluster's controller identity (the first controller on this database)", "fingerprint", keypinOf(certPEM), "source", from)
		}
	}
	if err != nil {
		return Identity{}, fmt.Errorf("reading the cluster's controller identity: %w", err)
	}
	storedFP := keypinOf(stored.CertPEM)
	keyPEM, err := ring.Open(stored.KeyID, stored.SealedKey, identityAAD)
	if err != nil {
		sealedErr := fmt.Errorf("%w: the identity in the database (%s) was sealed with secrets key %s and this controller's key is %s (%v). "+
			"Every controller of a cluster must use the same secrets key: give each the same WISP_SECRETS_KEY (or the same secrets.key file)",
			ErrIdentitySealed, storedFP, stored.KeyID, ring.CurrentID(), err)
		if local && localID.String() == storedFP {
			// The data dir holds the cluster's key itself (a mounted
			// Secret): serve it; the secrets key is wrong all the same.
			log.Warn("serving the cluster's identity from the data dir; module secrets sealed by the other controllers will not open here", "err", sealedErr)
			return localID, nil
		}
		return Identity{}, sealedErr
	}
	id, err := parseIdentity(stored.CertPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("the cluster's controller identity in the database: %w", err)
	}
	if local && localID.Fingerprint != id.Fingerprint {
		return Identity{}, fmt.Errorf("%w: %s holds %s, the cluster's (in the database) is %s. "+
			"Agents pin one key: to join this controller to the cluster, move %s and %s out of the data dir "+
			"(agents that joined with %s then need a new join token); to keep that key for the cluster instead, start this controller on an empty database",
			ErrIdentityMismatch, filepath.Join(dir, certFile), localID, id, certFile, keyFile, localID)
	}
	if stored.KeyID != ring.CurrentID() {
		if _, err := ResealIdentity(ctx, st, ring); err != nil {
			log.Warn("could not seal the cluster's identity again under the current secrets key; the old key is still needed", "err", err)
		}
	}
	if !local {
		writeIdentityFiles(dir, id, log)
	}
	return id, nil
}

// writeIdentityFiles copies the cluster's identity into the data dir, as
// a lone controller keeps its own, for what reads it there (an agent-token
// job pinning the key, a backup). Best effort: a read-only data dir (a
// mounted Secret) keeps what it has, and nothing depends on the copy.
func writeIdentityFiles(dir string, id Identity, log *slog.Logger) {
	err := func() error {
		keyDER, err := x509.MarshalPKCS8PrivateKey(id.Cert.PrivateKey)
		if err != nil {
			return err
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		clear(keyDER)
		defer clear(keyPEM)
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Leaf.Raw})
		// Both written aside first, so that a crash leaves both or neither
		// (but for the instant between the two renames).
		for _, f := range []struct {
			name string
			data []byte
			mode os.FileMode
		}{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}} {
			if err := os.WriteFile(filepath.Join(dir, f.name+".tmp"), f.data, f.mode); err != nil {
				return err
			}
		}
		if err := os.Rename(filepath.Join(dir, keyFile+".tmp"), filepath.Join(dir, keyFile)); err != nil {
			return err
		}
		return os.Rename(filepath.Join(dir, certFile+".tmp"), filepath.Join(dir, certFile))
	}()
	if err != nil {
		for _, f := range []string{keyFile + ".tmp", certFile + ".tmp", keyFile} {
			os.Remove(filepath.Join(dir, f))
		}
		log.Warn("could not copy the cluster's identity into the data dir (the controller uses the database's)", "dir", dir, "err", err)
		return
	}
	log.Info("copied the cluster's identity into the data dir", "dir", dir, "fingerprint", id.String())
}

// ResealIdentity seals the stored cluster identity's key again under
// ring's current key when another key of ring sealed it; it reports
// whether it did. No identity stored: false, nil.
func ResealIdentity(ctx context.Context, st IdentityStore, ring *sealbox.Ring) (bool, error) {
	stored, err := st.LoadIdentity(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if stored.KeyID == ring.CurrentID() {
		return false, nil
	}
	keyPEM, err := ring.Open(stored.KeyID, stored.SealedKey, identityAAD)
	if err != nil {
		return false, fmt.Errorf("%w (sealed with key %s): %w", ErrIdentitySealed, stored.KeyID, err)
	}
	keyID, sealed := ring.Seal(keyPEM, identityAAD)
	clear(keyPEM)
	return st.RewrapIdentity(ctx, keyID, sealed, stored.SealedKey)
}

// keypinOf is the key fingerprint of a PEM certificate, for messages.
func keypinOf(certPEM []byte) string {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "(unreadable certificate)"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "(unreadable certificate)"
	}
	return keypin.Of(cert).String()
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
