package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/protocol"
)

func TestTokenCreate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	var out, errb bytes.Buffer
	d := deps{env: envFrom(map[string]string{"WISP_DATA_DIR": dir}), stdout: &out, stderr: &errb}

	// No controller has run: the token goes straight into the embedded store.
	if code := runWith(context.Background(), []string{"token", "create", "--ttl", "1h"}, d); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	tok, err := protocol.ParseJoinToken(out.String())
	if err != nil {
		t.Fatalf("printed %q: %v", out.String(), err)
	}
	if len(tok.Secret) != 32 {
		t.Fatalf("secret of %d bytes", len(tok.Secret))
	}
	// The controller started later has the same key the token pins.
	_, logs, stop := startController(t, []string{"-listen", "127.0.0.1:0", "-quic-listen", "127.0.0.1:0"}, map[string]string{"WISP_DATA_DIR": dir})
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "QUIC listening") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if want := "fingerprint=" + hex.EncodeToString(tok.Fingerprint[:8]); !strings.Contains(logs.String(), want) {
		t.Fatalf("controller log lacks %s:\n%s", want, logs.String())
	}

	for name, args := range map[string][]string{
		"no verb":   {"token"},
		"bad verb":  {"token", "delete"},
		"bad ttl":   {"token", "create", "--ttl", "soon"},
		"ttl empty": {"token", "create", "--ttl"},
		"uses 0":    {"token", "create", "--uses", "0"},
		"uses word": {"token", "create", "--uses", "many"},
	} {
		errb.Reset()
		if code := runWith(context.Background(), args, d); code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", name, code, errb.String())
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out bytes.Buffer
		if code := runWith(context.Background(), args, deps{env: envFrom(nil), stdout: &out, stderr: &out}); code != 0 || !strings.HasPrefix(out.String(), "wisp-controller ") {
			t.Fatalf("%s: exit %d: %q", args[0], code, out.String())
		}
	}
}
