package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/wispfn/wisp/controller/store"
)

const (
	// TokenPrefix starts every Wisp token, so that a leaked one is easy to
	// recognise (secret scanners, logs).
	TokenPrefix = "wisp_"
	// AdminName is the subject the controller creates on first start.
	AdminName = "admin"
	// AdminTokenFile is the admin token's file name in the data dir.
	AdminTokenFile = "admin.token"

	tokenBytes = 32
	// maxTokenLen bounds what Authenticate hashes; real tokens are 48 chars.
	maxTokenLen = 256
)

// NewToken returns a fresh random token.
func NewToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash is what the store keeps of a token.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// NewSubject makes a subject and its token. The caller stores the subject and
// hands the token to its owner once.
func NewSubject(name string, admin bool) (store.Subject, string) {
	tok := NewToken()
	return store.Subject{Name: name, TokenHash: Hash(tok), Admin: admin}, tok
}

// Authenticate returns the subject holding token.
//
// # Errors
//
// ErrBadToken for an empty, oversized or unknown token; a store error
// otherwise.
func Authenticate(ctx context.Context, st store.Store, token string) (store.Subject, error) {
	if token == "" || len(token) > maxTokenLen {
		return store.Subject{}, ErrBadToken
	}
	h := Hash(token)
	s, err := st.SubjectByTokenHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return store.Subject{}, ErrBadToken
	}
	if err != nil {
		return store.Subject{}, fmt.Errorf("auth: look up token: %w", err)
	}
	if subtle.ConstantTimeCompare(s.TokenHash, h) != 1 {
		return store.Subject{}, ErrBadToken
	}
	return s, nil
}

// EnsureAdmin makes sure an admin subject exists. When none does, it creates
// one named AdminName: with the token already in dataDir/admin.token when
// that file holds one (an operator's, e.g. from a Kubernetes Secret; see
// looksLikeToken), else with a new token written there with mode 0600
// (replacing a file that holds none). It returns the token file's path and
// whether it created the admin.
//
// # Notes
//
// The token file is written (to a temporary name) before the subject is
// stored and renamed into place after, so a crash never leaves an admin whose
// token nobody has. When several controllers share one Postgres and start
// together, one wins; the others find the subject exists, drop their file,
// and report created=false.
func EnsureAdmin(ctx context.Context, st store.Store, dataDir string, log *slog.Logger) (path string, created bool, err error) {
	path = filepath.Join(dataDir, AdminTokenFile)
	subjects, err := st.ListSubjects(ctx)
	if err != nil {
		return path, false, fmt.Errorf("auth: list subjects: %w", err)
	}
	for _, s := range subjects {
		if s.Admin {
			log.Info("admin subject exists", "subject", s.Name, "token_file", path)
			return path, false, nil
		}
	}
	if tok, err := ReadTokenFile(path); err == nil && looksLikeToken(tok) {
		// An operator-provided token (a Kubernetes Secret mounted there):
		// the admin gets it, and the file stays as it is.
		if _, err := st.CreateSubject(ctx, store.Subject{Name: AdminName, TokenHash: Hash(tok), Admin: true}); err != nil {
			if errors.Is(err, store.ErrExists) {
				log.Info("admin subject created by another controller", "subject", AdminName)
				return path, false, nil
			}
			return path, false, fmt.Errorf("auth: create admin subject: %w", err)
		}
		log.Info("created admin subject with the token already in the token file", "subject", AdminName, "token_file", path)
		return path, true, nil
	}
	subject, tok := NewSubject(AdminName, true)
	tmp, err := stageTokenFile(dataDir, tok)
	if err != nil {
		return path, false, err
	}
	defer os.Remove(tmp) // no-op after the rename
	if _, err := st.CreateSubject(ctx, subject); err != nil {
		if errors.Is(err, store.ErrExists) {
			log.Info("admin subject created by another controller", "subject", AdminName)
			return path, false, nil
		}
		return path, false, fmt.Errorf("auth: create admin subject: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return path, true, fmt.Errorf("auth: admin created but its token could not be moved to %s: %w", path, err)
	}
	log.Info("created admin subject; its token is in the token file", "subject", AdminName, "token_file", path)
	return path, true, nil
}

// RotateAdmin gives the admin subject (AdminName) a new token, written to
// dataDir/admin.token (mode 0600), and returns the file's path. The old
// token stops working as soon as the store has the new one.
//
// # Notes
//
// As in EnsureAdmin, the new token is written to a temporary file before
// the store changes and renamed over the old file after, so a failure
// leaves either the old token working or the new one on disk. With several
// controllers on one Postgres, only this data dir's file is replaced: copy
// it to the others (or keep it in a shared Secret).
//
// # Errors
//
// ErrNoAdmin when the store has no admin subject yet (the controller never
// started on it); a store or file error otherwise.
func RotateAdmin(ctx context.Context, st store.Store, dataDir string) (path string, err error) {
	path = filepath.Join(dataDir, AdminTokenFile)
	tok := NewToken()
	tmp, err := stageTokenFile(dataDir, tok)
	if err != nil {
		return path, err
	}
	defer os.Remove(tmp) // no-op after the rename
	if err := st.RotateSubjectToken(ctx, AdminName, Hash(tok)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return path, ErrNoAdmin
		}
		return path, fmt.Errorf("auth: store the new admin token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return path, fmt.Errorf("auth: the admin token was replaced but the new one could not be moved to %s (it is in %s): %w", path, tmp, err)
	}
	return path, nil
}

// stageTokenFile writes tok to a new temporary file (mode 0600) in dataDir
// and returns its name; the caller renames it into place or removes it.
func stageTokenFile(dataDir, tok string) (string, error) {
	tmp, err := os.CreateTemp(dataDir, ".admin.token-*")
	if err != nil {
		return "", fmt.Errorf("auth: write admin token: %w", err)
	}
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(tok + "\n")
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("auth: write admin token: %w", err)
	}
	return tmp.Name(), nil
}

// looksLikeToken says whether tok has the form NewToken gives (the prefix
// and at least 256 bits in base64url), so that a file holding anything
// else is never made the admin's token.
func looksLikeToken(tok string) bool {
	rest, ok := strings.CutPrefix(tok, TokenPrefix)
	if !ok || len(rest) < 43 || len(tok) > maxTokenLen {
		return false
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// ReadTokenFile reads a token written by EnsureAdmin.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("auth: read token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
