package state

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wispfn/wisp/protocol"
)

const agentPlaintext = "edge-s3cret-PLAINTEXT-4b1d"

// TestDesiredSecretsSealed: the desired functions' secret values survive
// a reopen, are absent from the raw bbolt file, and do not open without
// the key file beside it (a copied file alone reveals nothing).
func TestDesiredSecretsSealed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fs := []protocol.DesiredFunction{
		{Module: "m", Name: "f", Digest: "sha256:aa", Env: []string{"MODE=edge"}, Secrets: []protocol.Secret{{Name: "API_KEY", Value: []byte(agentPlaintext)}}},
		{Module: "m", Name: "plain", Digest: "sha256:bb"},
	}
	if err := s.SetDesired(fs); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, SecretsKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	check := func(s *State, want bool) {
		t.Helper()
		f, ok := s.DesiredFunction("m", "f")
		if !ok {
			t.Fatal("DesiredFunction: not found")
		}
		env := DesiredEnv(f)
		has := slices.Contains(env, "API_KEY="+agentPlaintext)
		if has != want || !slices.Contains(env, "MODE=edge") {
			t.Fatalf("env %q: want the secret %v", env, want)
		}
		all, err := s.Desired()
		if err != nil || len(all) != 2 || (len(all[0].Secrets) == 1) != want || all[1].Secrets != nil {
			t.Fatalf("Desired: %+v %v", all, err)
		}
	}
	check(s, true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("sha256:aa")) {
		t.Fatal("the file does not hold the desired set: the test looks at the wrong file")
	}
	if bytes.Contains(raw, []byte(agentPlaintext)) || bytes.Contains(raw, []byte(agentPlaintext[:10])) {
		t.Fatal("the agent's bbolt file holds a secret's plaintext")
	}

	// After a restart the function still has its secret.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	check(s, true)
	s.Close()

	// The file copied alone (no key beside it) reveals nothing, and the
	// function runs without the secret.
	other := t.TempDir()
	copyFile(t, path, filepath.Join(other, "agent.db"))
	s2, err := Open(filepath.Join(other, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	check(s2, false)
	s2.Close()

	// With another key beside it, neither.
	os.WriteFile(filepath.Join(other, SecretsKeyFile), bytes.Repeat([]byte{5}, 32), 0o600)
	s3, err := Open(filepath.Join(other, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	check(s3, false)
	// A new desired set (the controller's, after the reconnect) brings them back.
	if err := s3.SetDesired(fs); err != nil {
		t.Fatal(err)
	}
	check(s3, true)
	// One without secrets drops the sealed values.
	fs[0].Secrets = nil
	if err := s3.SetDesired(fs); err != nil {
		t.Fatal(err)
	}
	check(s3, false)
	s3.Close()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
