package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/internal/testing/testwait"
	"github.com/wispfn/wisp/protocol"
)

func secretsKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// TestClusterSharesIdentity: two controllers started at once on one empty
// Postgres, each with its own empty data dir and the same secrets key,
// serve one identity: the REST certificate the CLI pins, the fingerprint
// `tls fingerprint` prints and the one join tokens carry. Exactly one of
// them holds each singleton lease. A controller with another secrets key,
// and one whose data dir holds another identity, refuse to start, saying
// why.
func TestClusterSharesIdentity(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	key := secretsKey(t)
	type started struct {
		base string
		logs *syncBuffer
		done chan struct{} // closed when the controller exited, with its exit code in *code
		code *int
	}
	start := func(dir string, env map[string]string) started {
		s := started{logs: &syncBuffer{}, done: make(chan struct{}), code: new(int)}
		addr := make(chan net.Addr, 1)
		ctx, cancel := context.WithCancel(context.Background())
		args := []string{"--database-url", dsn, "--data-dir", dir, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0"}
		go func() {
			defer close(s.done)
			*s.code = runWith(ctx, args, deps{env: envFrom(env), stdout: io.Discard, stderr: s.logs, ready: func(a net.Addr) { addr <- a }})
		}()
		t.Cleanup(func() {
			cancel()
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				t.Errorf("a controller did not stop:\n%s", s.logs)
			}
		})
		select {
		case a := <-addr:
			s.base = "https://" + a.String()
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("a controller did not start:\n%s", s.logs)
		}
		return s
	}
	env := map[string]string{"WISP_SECRETS_KEY": key}
	dirs := []string{t.TempDir(), t.TempDir()}
	results := make(chan started, 2)
	for _, d := range dirs {
		go func() { results <- start(d, env) }()
	}
	cs := []started{<-results, <-results}
	fpRe := regexp.MustCompile(`tls_fingerprint=(sha256:[0-9a-f]{64})`)
	var pins []keypin.Fingerprint
	for _, c := range cs {
		if c.base == "" {
			t.Fatalf("a controller exited with %d:\n%s", *c.code, c.logs)
		}
		m := fpRe.FindStringSubmatch(c.logs.String())
		if m == nil {
			t.Fatalf("no tls_fingerprint in the log:\n%s", c.logs)
		}
		pin, err := keypin.Parse(m[1])
		if err != nil {
			t.Fatal(err)
		}
		pins = append(pins, pin)
		if _, _, cert, err := pinnedGet(t, c.base+"/v1/", "", pin); err != nil || protocol.KeyFingerprint(cert) != pin {
			t.Fatalf("REST certificate of %s: %v", c.base, err)
		}
	}
	if pins[0] != pins[1] {
		t.Fatalf("the two controllers serve %s and %s", pins[0], pins[1])
	}
	for _, d := range dirs { // a copy for what reads the data dir (compose's agent-token job)
		if copied, err := fleet.LoadOrCreateIdentity(d); err != nil || copied.Fingerprint != pins[0] {
			t.Errorf("the data dir %s holds %s (%v), want the cluster's %s", d, copied, err, pins[0])
		}
	}

	// tls fingerprint, from a third data dir, prints the cluster's.
	var out, errb bytes.Buffer
	if code := runWith(context.Background(), []string{"tls", "fingerprint", "--database-url", dsn, "--data-dir", t.TempDir()}, deps{env: envFrom(env), stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("tls fingerprint: %d %s", code, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != pins[0].String() {
		t.Errorf("tls fingerprint printed %s, the cluster's is %s", got, pins[0])
	}
	// A join token made through the store carries the cluster's key.
	out.Reset()
	errb.Reset()
	if code := runWith(context.Background(), []string{"token", "create", "--database-url", dsn, "--data-dir", t.TempDir(), "--url", "https://127.0.0.1:1"}, deps{env: envFrom(env), stdout: &out, stderr: &errb}); code != 0 {
		t.Fatalf("token create: %d %s", code, errb.String())
	}
	tok, err := protocol.ParseJoinToken(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Fingerprint != pins[0] {
		t.Errorf("the join token pins %x, the cluster's key is %s", tok.Fingerprint, pins[0])
	}

	// Each lease is held by exactly one of them. (The admin token is in
	// the data dir of the controller that created the admin.)
	var admin []byte
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "admin.token")); err == nil {
			admin = b
		}
	}
	for _, lease := range []string{"sinks", "events"} {
		testwait.Until(t, 10*time.Second, func() error {
			held := 0
			for _, c := range cs {
				code, body, _, err := pinnedGet(t, c.base+"/metrics", strings.TrimSpace(string(admin)), pins[0])
				if err != nil || code != 200 {
					return fmt.Errorf("GET /metrics: %d %v", code, err)
				}
				if strings.Contains(body, `wisp_controller_lease_held{lease="`+lease+`"} 1`) {
					held++
				}
			}
			if held != 1 {
				return fmt.Errorf("lease %s held by %d controllers, want 1", lease, held)
			}
			return nil
		})
	}

	// Another secrets key: refused, saying the cluster shares one.
	bad := start(t.TempDir(), map[string]string{"WISP_SECRETS_KEY": secretsKey(t)})
	if bad.base != "" {
		t.Fatal("a controller with another secrets key started")
	}
	if code := *bad.code; code == 0 || !strings.Contains(bad.logs.String(), "WISP_SECRETS_KEY") {
		t.Errorf("another secrets key: exit %d:\n%s", code, bad.logs)
	}
	// A data dir with another identity: refused, naming both keys.
	stray := t.TempDir()
	id, err := fleet.LoadOrCreateIdentity(stray)
	if err != nil {
		t.Fatal(err)
	}
	bad = start(stray, env)
	if bad.base != "" {
		t.Fatal("a controller with another identity in its data dir started")
	}
	if code := *bad.code; code == 0 || !strings.Contains(bad.logs.String(), id.String()) || !strings.Contains(bad.logs.String(), pins[0].String()) {
		t.Errorf("a stray identity: exit %d:\n%s", code, bad.logs)
	}
}
