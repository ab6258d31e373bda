package auth

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wispfn/wisp/controller/store"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNewToken(t *testing.T) {
	re := regexp.MustCompile(`^wisp_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 100 {
		tok := NewToken()
		if !re.MatchString(tok) || seen[tok] {
			t.Fatalf("token %q: bad form or repeated", tok)
		}
		seen[tok] = true
	}
}

func TestEnsureAdmin(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)

	path, created, err := EnsureAdmin(ctx, st, dir, log)
	if err != nil || !created || path != filepath.Join(dir, AdminTokenFile) {
		t.Fatalf("EnsureAdmin = %q, %v, %v", path, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	tok, err := ReadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	subj, err := Authenticate(ctx, st, tok)
	if err != nil || !subj.Admin || subj.Name != AdminName {
		t.Fatalf("Authenticate(admin token) = %+v, %v", subj, err)
	}
	// Only the hash is stored.
	subs, _ := st.ListSubjects(ctx)
	if len(subs) != 1 || string(subs[0].TokenHash) == tok || len(subs[0].TokenHash) != 32 {
		t.Fatalf("subjects = %+v", subs)
	}

	// A second start reuses the admin and leaves the file alone.
	path2, created, err := EnsureAdmin(ctx, st, dir, log)
	if err != nil || created || path2 != path {
		t.Fatalf("second EnsureAdmin = %q, %v, %v", path2, created, err)
	}
	if tok2, _ := ReadTokenFile(path); tok2 != tok {
		t.Fatal("the second start rewrote the token file")
	}
	if subs, _ := st.ListSubjects(ctx); len(subs) != 1 {
		t.Fatalf("second start made another subject: %+v", subs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("data dir holds %v, want only the token file", entries)
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	subj, tok := NewSubject("alice", false)
	if _, err := st.CreateSubject(ctx, subj); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", tok + "x", tok[:len(tok)-1], "wisp_", string(make([]byte, 300))} {
		if _, err := Authenticate(ctx, st, bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("Authenticate(%.20q) = %v, want ErrBadToken", bad, err)
		}
	}
	if s, err := Authenticate(ctx, st, tok); err != nil || s.Name != "alice" || s.Admin {
		t.Fatalf("Authenticate = %+v, %v", s, err)
	}
}

func TestRotateAdmin(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	dir := t.TempDir()

	if _, err := RotateAdmin(ctx, st, dir); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("RotateAdmin before any admin = %v, want ErrNoAdmin", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused rotation left %v in the data dir", entries)
	}
	path, _, err := EnsureAdmin(ctx, st, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := ReadTokenFile(path)

	got, err := RotateAdmin(ctx, st, dir)
	if err != nil || got != path {
		t.Fatalf("RotateAdmin = %q, %v", got, err)
	}
	tok, err := ReadTokenFile(path)
	if err != nil || tok == old {
		t.Fatalf("token file after rotation: %q, %v (old %q)", tok, err, old)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Authenticate(ctx, st, old); !errors.Is(err, ErrBadToken) {
		t.Fatalf("old admin token after rotation: %v, want ErrBadToken", err)
	}
	if subj, err := Authenticate(ctx, st, tok); err != nil || !subj.Admin {
		t.Fatalf("new admin token: %+v, %v", subj, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("data dir holds %v, want only the token file", entries)
	}
}

// TestEnsureAdminAdoptsTokenFile: a token the operator put in admin.token
// before the first start becomes the admin's, and the file is left alone;
// a file holding no token is replaced.
func TestEnsureAdminAdoptsTokenFile(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name, content string
		adopted       bool
	}{
		{"operator token", NewToken() + "\n", true},
		{"garbage", "hunter2\n", false},
		{"short", TokenPrefix + "abc\n", false},
		{"bad characters", TokenPrefix + strings.Repeat("a+", 30) + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, dir := openStore(t), t.TempDir()
			path := filepath.Join(dir, AdminTokenFile)
			if err := os.WriteFile(path, []byte(tc.content), 0o400); err != nil {
				t.Fatal(err)
			}
			if _, created, err := EnsureAdmin(ctx, st, dir, log); err != nil || !created {
				t.Fatalf("EnsureAdmin = %v, %v", created, err)
			}
			tok, _ := ReadTokenFile(path)
			if adopted := tok == strings.TrimSpace(tc.content); adopted != tc.adopted {
				t.Fatalf("file holds %q after EnsureAdmin; adopted %v, want %v", tok, adopted, tc.adopted)
			}
			if subj, err := Authenticate(ctx, st, tok); err != nil || !subj.Admin {
				t.Fatalf("the file's token: %+v, %v", subj, err)
			}
		})
	}
}
