package state

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

func open(t *testing.T, path string) *State {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("consistency check: %v", err)
		}
		s.Close()
	})
	return s
}

func TestCodeAndIdentitySurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	code := []byte("\x00asm\x01\x00\x00\x00")
	d := digestOf(code)
	if err := s.PutCode(d, code); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCode(d, []byte("other bytes")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	id := Identity{AgentID: "ag_1", Credential: []byte("secret"), Controller: []byte{1, 2, 3}}
	if err := s.SetIdentity(id); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	got, err := s.Code(d)
	if err != nil || string(got) != string(code) {
		t.Fatalf("Code: %q %v", got, err)
	}
	if gotID, _ := s.Identity(); gotID.AgentID != "ag_1" || string(gotID.Credential) != "secret" || !slices.Equal(gotID.Controller, []byte{1, 2, 3}) {
		t.Fatalf("identity %+v", gotID)
	}
	if ds, _ := s.Digests(); !slices.Equal(ds, []string{d}) || !s.HasCode(d) {
		t.Fatalf("digests %v", ds)
	}
	if err := s.DeleteCode(d, "sha256:absent"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Code(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	open(t, path)
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestFreshIdentityIsEmpty(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	id, err := s.Identity()
	if err != nil || id.AgentID != "" || id.Credential != nil {
		t.Fatalf("%+v %v", id, err)
	}
}
