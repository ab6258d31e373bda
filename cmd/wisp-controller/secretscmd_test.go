package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/sealbox"
)

// TestSecretsRotateKey: values sealed under an old key are sealed again
// under the current one (made when missing); afterwards the old key is
// needed no more. The value never reaches the command's output.
func TestSecretsRotateKey(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const value = "rotate-S3CRET-value"
	oldRaw := bytes.Repeat([]byte{7}, sealbox.KeySize)
	oldFile := filepath.Join(dir, "secrets.key.old")
	if err := os.WriteFile(oldFile, oldRaw, 0o600); err != nil {
		t.Fatal(err)
	}
	oldKey, _ := sealbox.NewKey(oldRaw)
	st, err := store.OpenEmbedded(filepath.Join(dir, "controller.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st.CreateModule(ctx, "m", "")
	if _, err := secrets.New(st, sealbox.NewRing(oldKey), 0).Put(ctx, "m", "K", []byte(value)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	rotate := func(env map[string]string, args ...string) (int, string) {
		var out bytes.Buffer
		code := runWith(ctx, append([]string{"secrets", "rotate-key", "--data-dir", dir}, args...), deps{env: envFrom(env), stdout: &out, stderr: &out})
		return code, out.String()
	}
	// Without the old key nothing opens: it fails and changes nothing.
	if code, out := rotate(nil); code == 0 || !strings.Contains(out, "cannot be decrypted") {
		t.Fatalf("rotate without the old key: %d %s", code, out)
	}
	code, out := rotate(nil, "--secrets-old-key-files", oldFile)
	if code != 0 || !strings.Contains(out, "sealed again: 1;") || strings.Contains(out, value) {
		t.Fatalf("rotate: %d %s", code, out)
	}
	newKey, err := sealbox.ReadKeyFile(filepath.Join(dir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err = store.OpenEmbedded(filepath.Join(dir, "controller.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := secrets.New(st, sealbox.NewRing(newKey), 0).Values(ctx, "m", []string{"K"})
	st.Close()
	if err != nil || string(v[0].Value) != value {
		t.Fatalf("with the new key alone: %v", err)
	}
	// The old key given as WISP_SECRETS_OLD_KEYS: nothing left to do.
	code, out = rotate(map[string]string{"WISP_SECRETS_OLD_KEYS": base64.StdEncoding.EncodeToString(oldRaw)})
	if code != 0 || !strings.Contains(out, "sealed again: 0; already under the current key: 1") {
		t.Fatalf("second rotate: %d %s", code, out)
	}
	// WISP_SECRETS_KEY overrides the file: with another key nothing opens.
	code, out = rotate(map[string]string{"WISP_SECRETS_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))})
	if code == 0 || strings.Contains(out, value) {
		t.Fatalf("rotate with an unrelated key: %d %s", code, out)
	}
}
