package sealbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := NewKey(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("hunter2-plaintext")
	a := k.Seal(plain, []byte("m\x00K"))
	b := k.Seal(plain, []byte("m\x00K"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	if bytes.Contains(a, plain) {
		t.Fatal("the sealed value holds the plaintext")
	}
	got, err := k.Open(a, []byte("m\x00K"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open: %q, %v", got, err)
	}
	if _, err := k.Open(a, []byte("m\x00L")); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open with other additional data: %v; want ErrOpen", err)
	}
	a[len(a)-1] ^= 1
	if _, err := k.Open(a, []byte("m\x00K")); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open of a changed value: %v; want ErrOpen", err)
	}
	if _, err := k.Open([]byte{1, 2}, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open of a short value: %v", err)
	}
	if _, err := NewKey([]byte("short")); err == nil {
		t.Fatal("NewKey of 5 bytes: no error")
	}
}

func TestRing(t *testing.T) {
	old, _ := NewKey(bytes.Repeat([]byte{1}, KeySize))
	cur, _ := NewKey(bytes.Repeat([]byte{2}, KeySize))
	if old.ID() == cur.ID() || len(cur.ID()) != 16 {
		t.Fatalf("ids %q %q", old.ID(), cur.ID())
	}
	id, sealed := NewRing(old).Seal([]byte("v"), nil)
	r := NewRing(cur, old)
	if r.CurrentID() != cur.ID() {
		t.Fatal("CurrentID")
	}
	if got, err := r.Open(id, sealed, nil); err != nil || string(got) != "v" {
		t.Fatalf("Open with an old key: %q %v", got, err)
	}
	if _, err := NewRing(cur).Open(id, sealed, nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open without the old key: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secrets.key")
	k, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("key file: %v %v", fi, err)
	}
	k2, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || k2.ID() != k.ID() {
		t.Fatalf("load: %v %v %v", created, err, k2)
	}
	os.Chmod(path, 0o644)
	if _, err := ReadKeyFile(path); err == nil {
		t.Fatal("a world-readable key file was read")
	}
	b64 := filepath.Join(t.TempDir(), "b64.key")
	os.WriteFile(b64, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, KeySize))+"\n"), 0o600)
	kb, err := ReadKeyFile(b64)
	want, _ := NewKey(bytes.Repeat([]byte{3}, KeySize))
	if err != nil || kb.ID() != want.ID() {
		t.Fatalf("base64 key file: %v", err)
	}
	if _, err := ParseKey("not base64!"); err == nil {
		t.Fatal("ParseKey of junk")
	}
	if _, err := ParseKey(base64.StdEncoding.EncodeToString([]byte("short"))); err == nil {
		t.Fatal("ParseKey of a short key")
	}
}
