package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rotate runs `admin-token rotate` with args and returns its exit code and
// output.
func rotate(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := runWith(context.Background(), append([]string{"admin-token", "rotate"}, args...), deps{env: envFrom(nil), stdout: &out, stderr: &out})
	return code, out.String()
}

func readAdminToken(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// TestAdminTokenRotateEmbedded: refused while the controller runs (its
// store is locked), done with it stopped; after a restart the old token is
// 401 and the new one 200.
func TestAdminTokenRotateEmbedded(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if code, out := rotate(t, "--data-dir", dir); code != 1 || !strings.Contains(out, "never run") {
		t.Fatalf("rotate before the first start: exit %d: %s", code, out)
	}
	args := []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--tls", "off"}
	base, _, stop := startController(t, args, nil)
	old := readAdminToken(t, dir)
	if code, _ := get(t, base+"/v1/fn", old); code != 200 {
		t.Fatalf("GET /v1/fn with the first token = %d", code)
	}
	code, out := rotate(t, "--data-dir", dir)
	if code != 1 || !strings.Contains(out, "locked") || !strings.Contains(out, "stop it") {
		t.Fatalf("rotate while the controller runs: exit %d: %s", code, out)
	}
	if readAdminToken(t, dir) != old {
		t.Fatal("a refused rotation changed admin.token")
	}
	if code := stop(); code != 0 {
		t.Fatalf("controller exit %d", code)
	}

	if code, out := rotate(t, "--data-dir", dir); code != 0 || !strings.Contains(out, filepath.Join(dir, "admin.token")) {
		t.Fatalf("rotate: exit %d: %s", code, out)
	}
	fresh := readAdminToken(t, dir)
	if fresh == old || !strings.HasPrefix(fresh, "wisp_") {
		t.Fatalf("admin.token after rotation: %q (old %q)", fresh, old)
	}
	base, _, _ = startController(t, args, nil)
	if code, _ := get(t, base+"/v1/fn", old); code != 401 {
		t.Fatalf("GET /v1/fn with the old token = %d, want 401", code)
	}
	if code, _ := get(t, base+"/v1/fn", fresh); code != 200 {
		t.Fatalf("GET /v1/fn with the new token = %d, want 200", code)
	}
}

// TestAdminTokenRotatePostgres: with Postgres the rotation works while the
// controller runs, and takes effect at once.
func TestAdminTokenRotatePostgres(t *testing.T) {
	t.Parallel()
	dsn := pgSchema(t)
	dir := t.TempDir()
	base, _, _ := startController(t, []string{"--database-url", dsn, "--data-dir", dir, "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--tls", "off"}, nil)
	old := readAdminToken(t, dir)
	if code, out := rotate(t, "--data-dir", dir, "--database-url", dsn); code != 0 {
		t.Fatalf("rotate: exit %d: %s", code, out)
	}
	fresh := readAdminToken(t, dir)
	if code, _ := get(t, base+"/v1/fn", old); code != 401 {
		t.Fatalf("GET /v1/fn with the old token = %d, want 401", code)
	}
	if code, _ := get(t, base+"/v1/fn", fresh); code != 200 {
		t.Fatalf("GET /v1/fn with the new token = %d, want 200", code)
	}
}
