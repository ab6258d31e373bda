package deploytest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallAgentScript runs builds/install-agent.sh in its test mode
// (WISP_INSTALL_ROOT: a fake root, no user, no systemctl) on a tarball laid
// out like the release's, and checks what it writes.
func TestInstallAgentScript(t *testing.T) {
	n, err := knownNames()
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(repo, "builds/systemd/wisp-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	tarball := filepath.Join(dist, "wisp-0.0.0-linux-arm64.tar.gz")
	writeTarball(t, tarball, "wisp-0.0.0-linux-arm64", map[string][]byte{
		"wisp-agent":         []byte("#!/bin/sh\necho wisp-agent 0.0.0\n"),
		"wisp-agent.service": unit,
		"README.md":          []byte("readme\n"),
	})
	sum, _ := os.ReadFile(tarball)
	sums := fmt.Sprintf("%x  wisp-0.0.0-linux-arm64.tar.gz\n", sha256.Sum256(sum))
	if err := os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		t.Fatal(err)
	}

	// install runs the script with args and the join token on standard
	// input, the only place it takes it from.
	install := func(root, arch, token string, args ...string) (string, error) {
		cmd := exec.Command("sh", append([]string{filepath.Join(repo, "builds/install-agent.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "WISP_INSTALL_ROOT="+root, "WISP_INSTALL_ARCH="+arch)
		cmd.Stdin = strings.NewReader(token + "\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	root := t.TempDir()
	if out, err := install(root, "arm64", "wispjoin1.abc", "--name", "pi1", "--labels", "site=lab,rack=2", dist, "ctl.example:4433"); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	env, err := os.ReadFile(filepath.Join(root, "etc/wisp/agent.env"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(env), "\n") {
		l = strings.TrimSpace(l)
		commented := strings.HasPrefix(l, "#") // examples: names still checked
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "#"), "="); ok && strings.HasPrefix(k, "WISP_") {
			if !n["wisp-agent"].env[k] {
				t.Errorf("agent.env sets %s, which wisp-agent does not read", k)
			}
			if !commented {
				got[k] = v
			}
		}
	}
	for k, v := range map[string]string{"WISP_CONTROLLERS": "ctl.example:4433", "WISP_JOIN_TOKEN": "wispjoin1.abc",
		"WISP_AGENT_NAME": "pi1", "WISP_LABELS": "site=lab,rack=2", "WISP_DATA_DIR": "/var/lib/wisp"} {
		if got[k] != v {
			t.Errorf("agent.env: %s=%q, want %q\n%s", k, got[k], v, env)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/wisp/agent.env")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("agent.env mode: %v %v, want 0640", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, "usr/local/bin/wisp-agent")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("installed binary: %v, want mode 0755", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/wisp-agent.service")); !bytes.Equal(b, unit) {
		t.Error("the installed unit is not builds/systemd/wisp-agent.service")
	}

	// Running it again upgrades and keeps the old settings beside the new;
	// an agent that has joined needs no token.
	if out, err := install(root, "arm64", "", dist+"/wisp-0.0.0-linux-arm64.tar.gz", "ctl2.example:4433"); err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/wisp/agent.env.bak")); !bytes.Contains(b, []byte("WISP_CONTROLLERS=ctl.example:4433")) {
		t.Error("the second install kept no agent.env.bak with the first settings")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/wisp/agent.env")); !bytes.Contains(b, []byte("WISP_CONTROLLERS=ctl2.example:4433")) || bytes.Contains(b, []byte("WISP_JOIN_TOKEN=")) {
		t.Errorf("the upgrade without a token wrote:\n%s", b)
	}

	for _, tc := range []struct {
		name, arch, token string
		args              []string
		want              string
	}{
		{"wrong arch", "armv7", "wispjoin1.abc", []string{tarball, "ctl:4433"}, "not for this machine"},
		{"no tarball for arch in folder", "amd64", "wispjoin1.abc", []string{dist, "ctl:4433"}, "no wisp-*-linux-amd64.tar.gz"},
		{"not a join token", "arm64", "abc", []string{tarball, "ctl:4433"}, "wispjoin1."},
		{"no token on a first install", "arm64", "", []string{tarball, "ctl:4433"}, "no join token"},
		{"token on the command line", "arm64", "", []string{tarball, "ctl:4433", "wispjoin1.abc"}, "standard input"},
		{"missing argument", "arm64", "wispjoin1.abc", []string{tarball}, "usage"},
		{"space in argument", "arm64", "wispjoin1.abc", []string{"--name", "my pi", tarball, "ctl:4433"}, "spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := install(t.TempDir(), tc.arch, tc.token, tc.args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("want a failure saying %q, got %v:\n%s", tc.want, err, out)
			}
		})
	}
	t.Run("checksum mismatch", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(strings.Repeat("0", 64)+"  wisp-0.0.0-linux-arm64.tar.gz\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := install(t.TempDir(), "arm64", "wispjoin1.abc", tarball, "ctl:4433")
		if err == nil || !strings.Contains(out, "does not match") {
			t.Errorf("want a checksum failure, got %v:\n%s", err, out)
		}
	})
}

func writeTarball(t *testing.T, path, dir string, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/" + name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
