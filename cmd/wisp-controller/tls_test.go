package main

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
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/protocol"
)

// fingerprint runs `tls fingerprint` with args and returns what it printed.
func fingerprint(t *testing.T, args ...string) keypin.Fingerprint {
	t.Helper()
	var out, errb bytes.Buffer
	if code := runWith(context.Background(), append([]string{"tls", "fingerprint"}, args...), deps{env: envFrom(nil), stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("tls fingerprint: exit %d: %s", code, errb.String())
	}
	fp, err := keypin.Parse(out.String())
	if err != nil {
		t.Fatalf("tls fingerprint printed %q: %v", out.String(), err)
	}
	return fp
}

// pinnedGet GETs url trusting only the key pin, and returns the status, the
// body and the certificate the server presented.
func pinnedGet(t *testing.T, url, token string, pin keypin.Fingerprint) (int, string, *x509.Certificate, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: keypin.ClientConfig(pin)}}
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.TLS.PeerCertificates[0], nil
}

// TestTLSSelfSigned: by default (--tls auto) the REST API is TLS with the controller's
// own certificate; its fingerprint is logged and printed by `tls
// fingerprint` before the first start; a client pinning it is served, plain
// HTTP is not, and `token create` reaches the running controller over TLS.
func TestTLSSelfSigned(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	pin := fingerprint(t, "--data-dir", dir) // before the first start: made now
	if cfg, err := loadArgs(nil, envFrom(nil)); err != nil || cfg.TLS != "auto" {
		t.Fatalf("default tls = %q, %v; want auto", cfg.TLS, err)
	}
	base, logs, stop := startController(t, []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--tls", "auto"}, nil)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}
	if want := "tls_fingerprint=" + pin.String(); !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %s:\n%s", want, logs)
	}
	if again := fingerprint(t, "--data-dir", dir); again != pin {
		t.Fatalf("fingerprint changed: %s then %s", pin, again)
	}
	token := readAdminToken(t, dir)
	code, body, cert, err := pinnedGet(t, base+"/v1/fn", token, pin)
	if err != nil || code != 200 || body != `{"data":[{"name":"_"}]}` {
		t.Fatalf("pinned GET /v1/fn = %d %q %v", code, body, err)
	}
	// The REST certificate is the QUIC one: join tokens pin the same key.
	if fp := protocol.KeyFingerprint(cert); fp != pin {
		t.Fatalf("served key %x, want %s", fp, pin)
	}
	if _, _, _, err := pinnedGet(t, base+"/v1/", "", keypin.Fingerprint{1}); err == nil || !strings.Contains(err.Error(), pin.String()) {
		t.Fatalf("wrong pin: %v", err)
	}
	plain := "http://" + strings.TrimPrefix(base, "https://")
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(plain + "/v1/"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP served %d %q", resp.StatusCode, b)
		}
	}
	// token create goes through the running controller (its embedded store
	// is locked, so it cannot have written there), over TLS, pinned.
	var out, errb bytes.Buffer
	tc := runWith(context.Background(), []string{"token", "create", "--data-dir", dir, "--url", base},
		deps{env: envFrom(nil), stdout: &out, stderr: &errb})
	if _, err := protocol.ParseJoinToken(out.String()); tc != 0 || err != nil {
		t.Fatalf("token create over TLS: exit %d: %s %s", tc, out.String(), errb.String())
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// writeCert writes a self-signed certificate for name and its key as PEM
// files in dir.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestTLSCertFiles: with --tls-cert/--tls-key the REST API serves those
// files (verified as a CA would, by name), not the self-signed identity.
func TestTLSCertFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "wisp.example")
	data := filepath.Join(dir, "data")
	base, _, _ := startController(t, []string{"--data-dir", data, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile}, nil)
	pem, _ := os.ReadFile(certFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "wisp.example"}}}
	resp, err := c.Get(base + "/v1/")
	if err != nil {
		t.Fatalf("GET with the file's certificate as CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].Subject.CommonName != "wisp.example" {
		t.Fatalf("status %d, certificate %s", resp.StatusCode, resp.TLS.PeerCertificates[0].Subject)
	}
	// tls fingerprint prints the files' key, and it is the one served.
	pin := fingerprint(t, "--data-dir", data, "--tls-cert", certFile, "--tls-key", keyFile)
	if code, _, _, err := pinnedGet(t, base+"/v1/", "", pin); err != nil || code != 200 {
		t.Fatalf("pinned GET = %d, %v", code, err)
	}
	if self := fingerprint(t, "--data-dir", data); self == pin {
		t.Fatal("the files' key is the self-signed one")
	}
}

// TestTLSSettings: a certificate without its key, or --tls off with files,
// is a usage error (exit 2).
func TestTLSSettings(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"cert alone":     {"--tls-cert", "a.crt"},
		"key alone":      {"--tls-key", "a.key"},
		"off with files": {"--tls", "off", "--tls-cert", "a.crt", "--tls-key", "a.key"},
		"bad mode":       {"--tls", "on"},
	} {
		var errb bytes.Buffer
		code := runWith(context.Background(), append([]string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, args...), deps{env: envFrom(nil), stdout: io.Discard, stderr: &errb})
		if code != 2 || !regexp.MustCompile(`tls`).MatchString(errb.String()) {
			t.Errorf("%s: exit %d: %s", name, code, errb.String())
		}
	}
}

// TestMetricsAddr: with --metrics-addr, /metrics answers there without a
// token and is gone from the REST port, even for the admin.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	base, logs, _ := startController(t, []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}, nil)
	m := regexp.MustCompile(`msg=metrics addr=(\S+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", logs)
	}
	token := readAdminToken(t, dir)
	get(t, base+"/v1/fn", token) // counted in the metrics below
	code, body := get(t, "http://"+m[1]+"/metrics", "")
	if code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, `wisp_http_requests_total{method="GET",route="/v1/fn",status="200"}`) {
		t.Fatalf("GET metrics listener = %d:\n%.2000s", code, body)
	}
	if code, _ := get(t, base+"/metrics", token); code != 404 {
		t.Fatalf("GET /metrics on the REST port = %d, want 404", code)
	}
}
