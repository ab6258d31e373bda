package secrets_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/sealbox"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/protocol"
)

// plaintext is a value no sealed byte string may hold.
const plaintext = "s3cr3t-PLAINTEXT-marker-7f9c2a"

func newKey(t *testing.T, b byte) *sealbox.Key {
	t.Helper()
	k, err := sealbox.NewKey(bytes.Repeat([]byte{b}, sealbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type storeCloser interface {
	store.Store
	store.SecretStore
}

func openEmbedded(t *testing.T) (storeCloser, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "controller.db")
	s, err := store.OpenEmbedded(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestPutListValuesDelete(t *testing.T) {
	st, _ := openEmbedded(t)
	ctx := t.Context()
	svc := secrets.New(st, sealbox.NewRing(newKey(t, 1)), time.Hour)
	if _, err := svc.Put(ctx, "nomod", "K", []byte("v")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Put in no module: %v", err)
	}
	if err := st.CreateModule(ctx, "m", ""); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, value string
	}{
		{"1X", "v"}, {"A-B", "v"}, {"", "v"}, {string(bytes.Repeat([]byte("a"), 129)), "v"},
		{"K", "x\x00y"}, {"K", string(bytes.Repeat([]byte("v"), secrets.MaxValueBytes+1))},
	}
	for _, b := range bad {
		_, err := svc.Put(ctx, "m", b.name, []byte(b.value))
		if !errors.Is(err, secrets.ErrInvalid) {
			t.Fatalf("Put %q: %v; want ErrInvalid", b.name, err)
		}
		if bytes.Contains([]byte(err.Error()), []byte(b.value)) && len(b.value) > 1 {
			t.Fatalf("the error holds the value: %v", err)
		}
	}
	if _, err := svc.Put(ctx, "m", "API_KEY", []byte(plaintext)); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Put(ctx, "m", "OTHER", []byte("o")); err != nil {
		t.Fatal(err)
	}
	list, err := svc.List(ctx, "m")
	if err != nil || len(list) != 2 || list[0].Name != "API_KEY" || list[1].Name != "OTHER" || list[0].Updated.IsZero() {
		t.Fatalf("List: %+v %v", list, err)
	}
	vals, err := svc.Values(ctx, "m", []string{"OTHER", "API_KEY"})
	want := []protocol.Secret{{Name: "OTHER", Value: []byte("o")}, {Name: "API_KEY", Value: []byte(plaintext)}}
	if err != nil || !slices.EqualFunc(vals, want, func(a, b protocol.Secret) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }) {
		t.Fatalf("Values: %+v %v", vals, err)
	}
	if env := secrets.Env(vals); !slices.Equal(env, []string{"OTHER=o", "API_KEY=" + plaintext}) {
		t.Fatalf("Env: %q", env)
	}
	// A put replaces at once in this process (the cache is dropped).
	if _, err := svc.Put(ctx, "m", "OTHER", []byte("o2")); err != nil {
		t.Fatal(err)
	}
	if vals, _ := svc.Values(ctx, "m", []string{"OTHER"}); string(vals[0].Value) != "o2" {
		t.Fatalf("Values after a put: %q", vals[0].Value)
	}
	var miss *secrets.MissingError
	if err := svc.CheckRefs(ctx, "m", []string{"API_KEY", "NOPE", "NADA"}); !errors.As(err, &miss) || !slices.Equal(miss.Names, []string{"NOPE", "NADA"}) || !errors.Is(err, secrets.ErrInvalid) {
		t.Fatalf("CheckRefs: %v", err)
	}
	if err := svc.CheckRefs(ctx, "m", []string{"API_KEY"}); err != nil {
		t.Fatalf("CheckRefs of held secrets: %v", err)
	}
	if err := svc.CheckRefs(ctx, "nomod", []string{"K"}); !errors.As(err, &miss) {
		t.Fatalf("CheckRefs in no module: %v", err)
	}
	if err := svc.Delete(ctx, "m", "OTHER"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Values(ctx, "m", []string{"OTHER"}); !errors.As(err, &miss) {
		t.Fatalf("Values of a deleted secret: %v", err)
	}
	if err := svc.Delete(ctx, "m", "OTHER"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete twice: %v", err)
	}
}

func TestUsedBy(t *testing.T) {
	fns := []store.Function{
		{Module: "m", Name: "b", Spec: fnspec.Spec{Config: fnspec.Config{Secrets: []string{"K"}}}},
		{Module: "m", Name: "a", Spec: fnspec.Spec{Config: fnspec.Config{Secrets: []string{"X", "K"}}}},
		{Module: "m", Name: "c"},
		{Module: "n", Name: "d", Spec: fnspec.Spec{Config: fnspec.Config{Secrets: []string{"K"}}}},
	}
	if got := secrets.UsedBy(fns, "m", "K"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("UsedBy: %q", got)
	}
	if got := secrets.UsedBy(fns, "m", "Z"); got != nil {
		t.Fatalf("UsedBy of an unused secret: %q", got)
	}
}

// TestSealedBinding: a sealed row copied to another name (or module) does
// not open there.
func TestSealedBinding(t *testing.T) {
	st, _ := openEmbedded(t)
	ctx := t.Context()
	svc := secrets.New(st, sealbox.NewRing(newKey(t, 1)), time.Nanosecond)
	st.CreateModule(ctx, "m", "")
	svc.Put(ctx, "m", "A", []byte(plaintext))
	rows, _ := st.ListSecrets(ctx, "m")
	rows[0].Name = "B"
	if _, err := st.PutSecret(ctx, rows[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Values(ctx, "m", []string{"B"}); !errors.Is(err, secrets.ErrUnreadable) || bytes.Contains([]byte(err.Error()), []byte(plaintext)) {
		t.Fatalf("Values of a moved row: %v; want ErrUnreadable", err)
	}
}

func TestRotate(t *testing.T) {
	st, _ := openEmbedded(t)
	ctx := t.Context()
	k1, k2 := newKey(t, 1), newKey(t, 2)
	old := secrets.New(st, sealbox.NewRing(k1), time.Nanosecond)
	st.CreateModule(ctx, "m", "")
	st.CreateModule(ctx, "n", "")
	old.Put(ctx, "m", "A", []byte("a"))
	old.Put(ctx, "n", "B", []byte("b"))

	// The new key alone does not open them.
	if _, err := secrets.New(st, sealbox.NewRing(k2), time.Nanosecond).Values(ctx, "m", []string{"A"}); !errors.Is(err, secrets.ErrUnreadable) {
		t.Fatalf("Values with a new key only: %v", err)
	}
	if _, err := secrets.New(st, sealbox.NewRing(k2), time.Nanosecond).Rotate(ctx); !errors.Is(err, secrets.ErrUnreadable) {
		t.Fatalf("Rotate without the old key: %v", err)
	}
	both := secrets.New(st, sealbox.NewRing(k2, k1), time.Nanosecond)
	both.Put(ctx, "n", "C", []byte("c")) // already under the new key
	rep, err := both.Rotate(ctx)
	if err != nil || rep != (secrets.RotateReport{Resealed: 2, Current: 1}) {
		t.Fatalf("Rotate: %+v %v", rep, err)
	}
	all, _ := st.AllSecrets(ctx)
	for _, x := range all {
		if x.KeyID != k2.ID() {
			t.Fatalf("after Rotate %s/%s has key %s", x.Module, x.Name, x.KeyID)
		}
	}
	fresh := secrets.New(st, sealbox.NewRing(k2), time.Nanosecond)
	if v, err := fresh.Values(ctx, "n", []string{"B", "C"}); err != nil || string(v[0].Value) != "b" || string(v[1].Value) != "c" {
		t.Fatalf("Values with the new key only after Rotate: %+v %v", v, err)
	}
	if rep, err := fresh.Rotate(ctx); err != nil || rep != (secrets.RotateReport{Current: 3}) {
		t.Fatalf("second Rotate: %+v %v", rep, err)
	}
}

func TestLoadRing(t *testing.T) {
	dir := t.TempDir()
	r, created, err := secrets.LoadRing(secrets.KeySource{DataDir: dir})
	if err != nil || !created {
		t.Fatalf("LoadRing: %v %v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, secrets.KeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	r2, created, err := secrets.LoadRing(secrets.KeySource{DataDir: dir})
	if err != nil || created || r2.CurrentID() != r.CurrentID() {
		t.Fatalf("second LoadRing: %v %v", created, err)
	}
	env := map[string]string{secrets.KeyEnv: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", secrets.OldKeysEnv: "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}
	r3, _, err := secrets.LoadRing(secrets.KeySource{DataDir: t.TempDir(), Getenv: func(k string) string { return env[k] }, OldFiles: []string{filepath.Join(dir, secrets.KeyFileName)}})
	if err != nil || r3.CurrentID() != newKey(t, 1).ID() {
		t.Fatalf("LoadRing from the environment: %v", err)
	}
	_, sealed := sealbox.NewRing(newKey(t, 2)).Seal([]byte("x"), nil)
	if _, err := r3.Open(newKey(t, 2).ID(), sealed, nil); err != nil {
		t.Fatalf("an old key from the environment: %v", err)
	}
	env[secrets.KeyEnv] = "short"
	if _, _, err := secrets.LoadRing(secrets.KeySource{Getenv: func(k string) string { return env[k] }}); err == nil {
		t.Fatal("a bad key in the environment was taken")
	}
}

// TestRawBytesHoldNoPlaintext: neither the bbolt file nor the Postgres
// rows hold a secret's value, whatever is grepped.
func TestRawBytesHoldNoPlaintext(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		st, path := openEmbedded(t)
		putPlaintext(t, st)
		st.Close()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("API_KEY")) == false {
			t.Fatal("the file does not hold the secret's name: the test looks at the wrong file")
		}
		if bytes.Contains(raw, []byte(plaintext)) || bytes.Contains(raw, []byte(plaintext[:12])) {
			t.Fatal("the bbolt file holds the plaintext")
		}
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testpg.Schema(t, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := store.OpenPostgres(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		putPlaintext(t, st)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		rows, _ := conn.Query(ctx, `SELECT name, key_id, sealed, sealed::text FROM secrets`)
		n := 0
		for rows.Next() {
			var name, keyID, text string
			var sealed []byte
			if err := rows.Scan(&name, &keyID, &sealed, &text); err != nil {
				t.Fatal(err)
			}
			n++
			for _, b := range [][]byte{sealed, []byte(text), []byte(keyID), []byte(name)} {
				if bytes.Contains(b, []byte(plaintext)) || bytes.Contains(b, []byte(plaintext[:12])) {
					t.Fatalf("row %s holds the plaintext", name)
				}
			}
		}
		if rows.Err() != nil || n != 1 {
			t.Fatalf("rows: %d %v", n, rows.Err())
		}
		var hits int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM secrets WHERE position($1::bytea in sealed) > 0`, []byte(plaintext)).Scan(&hits); err != nil || hits != 0 {
			t.Fatalf("a bytea search for the plaintext: %d %v", hits, err)
		}
	})
}

func putPlaintext(t *testing.T, st storeCloser) {
	t.Helper()
	ctx := t.Context()
	if err := st.CreateModule(ctx, "m", ""); err != nil {
		t.Fatal(err)
	}
	svc := secrets.New(st, sealbox.NewRing(newKey(t, 9)), 0)
	for range 3 { // several versions: none of them leaves the value behind
		if _, err := svc.Put(ctx, "m", "API_KEY", []byte(plaintext)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := svc.Values(ctx, "m", []string{"API_KEY"}); err != nil || string(v[0].Value) != plaintext {
		t.Fatalf("Values: %v", err)
	}
}
