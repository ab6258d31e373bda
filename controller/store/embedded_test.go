package store_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/store/storetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openEmbedded is the storetest.Opener of Embedded: a file in a fresh
// temporary directory, closed and consistency-checked on cleanup.
func openEmbedded(t *testing.T) (store.Store, func(*testing.T) store.Store) {
	path := filepath.Join(t.TempDir(), "wisp.db")
	return openEmbeddedAt(t, path)
}

func openEmbeddedAt(t *testing.T, path string) (store.Store, func(*testing.T) store.Store) {
	var opened []*store.Embedded
	open := func(t *testing.T) store.Store {
		t.Helper()
		s, err := store.OpenEmbedded(path, testLogger(t))
		if err != nil {
			t.Fatalf("OpenEmbedded: %v", err)
		}
		opened = append(opened, s)
		return s
	}
	// Registered after t.TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		for _, s := range opened {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if err := store.CheckEmbeddedFile(path); err != nil {
			t.Errorf("consistency check of %s failed:\n%v", path, err)
		}
	})
	return open(t), open
}

func TestEmbeddedContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, openEmbedded)
}

// TestEmbeddedUnreadableSettings: fnspec's answer to bad stored data, on
// a record changed in the bbolt file with the store closed.
func TestEmbeddedUnreadableSettings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, open := openEmbeddedAt(t, path)
	storetest.UnreadableSettings(t, s, func(t *testing.T, module, name, field string, raw []byte) store.Store {
		if err := s.(*store.Embedded).Close(); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			// functions/<module id>/<name> -> the record's JSON; one module here.
			return tx.Bucket([]byte("functions")).ForEach(func(id, _ []byte) error {
				b := tx.Bucket([]byte("functions")).Bucket(id)
				v := b.Get([]byte(name))
				if v == nil {
					return nil
				}
				var rec map[string]any
				if err := json.Unmarshal(v, &rec); err != nil {
					return err
				}
				rec[field] = raw // []byte: base64, as the store writes it
				nv, err := json.Marshal(rec)
				if err != nil {
					return err
				}
				return b.Put([]byte(name), nv)
			})
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		s = open(t)
		return s
	})
}

func TestEmbeddedLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	openEmbeddedAt(t, path)

	// bbolt locks with flock, which also excludes a second open in this process.
	start := time.Now()
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err == nil {
		s.Close()
		t.Fatal("second OpenEmbedded of an open file succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second OpenEmbedded: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("ErrLocked took %s", d)
	}
}

// fileVersion reads meta/version of the closed store file at path.
func fileVersion(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("meta")).Get([]byte("version"))
		if len(b) != 8 {
			return fmt.Errorf("meta/version = %x", b)
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setFileVersion writes meta/version of the closed store file at path.
func setFileVersion(t *testing.T, path string, v uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedMetaVersion(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckEmbeddedFile(path); err != nil {
		t.Fatalf("new file: %v", err)
	}
	if v := fileVersion(t, path); v != store.EmbeddedVersion {
		t.Fatalf("meta/version of a new file = %d, want %d", v, store.EmbeddedVersion)
	}

	refused := []struct {
		name    string
		version uint64
		want    string // in the error
	}{
		{"newer", store.EmbeddedVersion + 1, "newer"},
		{"much newer", 1 << 40, "newer"},
		{"zero", 0, "version is 0"},
	}
	for _, tt := range refused {
		setFileVersion(t, path, tt.version)
		if s, err := store.OpenEmbedded(path, testLogger(t)); err == nil {
			s.Close()
			t.Fatalf("%s: OpenEmbedded accepted a file of schema version %d", tt.name, tt.version)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("%s: OpenEmbedded of version %d: %v, want an error saying %q", tt.name, tt.version, err, tt.want)
		}
		if v := fileVersion(t, path); v != tt.version {
			t.Fatalf("%s: the refused open changed meta/version to %d", tt.name, v)
		}
	}
	setFileVersion(t, path, store.EmbeddedVersion)
	s, err = store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatalf("reopen after restoring version %d: %v", store.EmbeddedVersion, err)
	}
	s.Close()
}

func TestEmbeddedRefusesForeignFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something else"))
		return err
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := store.OpenEmbedded(path, testLogger(t)); err == nil {
		s.Close()
		t.Fatal("OpenEmbedded accepted a bbolt file that is not a Wisp store")
	}
}

// TestEmbeddedCheckCatchesBrokenRefs makes sure the cleanup check would see
// a reference-count bug, so that its silence in the other tests means something.
func TestEmbeddedCheckCatchesBrokenRefs(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	code, digest := storetest.Code("refs")
	if _, err := s.CreateFunction(t.Context(), store.Function{Module: "_", Name: "f", Digest: digest}, code); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("coderefs")).Put([]byte(digest), binary.BigEndian.AppendUint64(nil, 2))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CheckEmbeddedFile(path); err == nil || !strings.Contains(err.Error(), "coderefs") {
		t.Fatalf("CheckEmbeddedFile of a wrong reference count: %v", err)
	}
}

// fixtureFile is testdata/embedded-v<version>.db: a file written by the
// build whose schema version that was (see TestEmbeddedWriteFixture).
func fixtureFile(version uint64) string {
	return filepath.Join("testdata", fmt.Sprintf("embedded-v%d.db", version))
}

// copyFixture copies the fixture of a schema version into a temporary file.
func copyFixture(t *testing.T, version uint64) string {
	t.Helper()
	fixture, err := os.ReadFile(fixtureFile(version))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wisp.db")
	if err := os.WriteFile(path, fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Contents of the fixtures: what TestEmbeddedWriteFixture stores from the
// schema version that introduced it on.
var (
	fixtureSeen   = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	fixtureLater  = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	fixtureBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
)

// writeFixtureData stores the fixture contents of schema version.
func writeFixtureData(ctx context.Context, s store.Store, version uint64) error {
	code, digest := storetest.Code("fixture")
	steps := []error{
		s.CreateModule(ctx, "math", ""),
		func() error {
			_, err := s.CreateFunction(ctx, store.Function{Module: "math", Name: "add", Digest: digest,
				ABI: "funless-v1", Spec: fnspec.Spec{Metadata: fnspec.Metadata{Tag: "t"}}}, code)
			return err
		}(),
		func() error {
			_, err := s.CreateSubject(ctx, store.Subject{Name: "admin", TokenHash: []byte("fixture token hash"), Admin: true})
			return err
		}(),
		func() error {
			_, err := s.PutScript(ctx, store.Script{Name: "app", Source: []byte("- t:\n  - workers: \"*\"\n")})
			return err
		}(),
	}
	if version >= 2 {
		for _, jt := range []store.JoinToken{
			{ID: "jt_00000001", SecretHash: []byte("fixture join secret never")},
			{ID: "jt_00000002", SecretHash: []byte("fixture join secret later"), Expires: fixtureLater},
			{ID: "jt_00000003", SecretHash: []byte("fixture join secret before"), Expires: fixtureBefore},
		} {
			_, err := s.CreateJoinToken(ctx, jt)
			steps = append(steps, err)
		}
		_, err := s.CreateAgent(ctx, store.Agent{ID: "ag_00000000000000f1", Name: "fixture edge",
			CredentialHash: []byte("fixture credential"), Labels: []string{"zone=eu", "arch=arm64"}})
		steps = append(steps, err,
			s.TouchAgent(ctx, "ag_00000000000000f1", "fixture edge", []string{"zone=eu", "arch=arm64", "gpu=no"}, fixtureSeen))
	}
	if version >= 3 {
		n, err := s.RecordActivations(ctx, fixtureActivations())
		if err == nil && n != len(fixtureActivations()) {
			err = fmt.Errorf("recorded %d fixture activations, want %d", n, len(fixtureActivations()))
		}
		steps = append(steps, err,
			s.DeliveryDone(ctx, fixtureActivationID(1), 0),
			s.DeliveryFailed(ctx, fixtureActivationID(1), 1, "couchdb down", fixtureLater))
	}
	if version >= 4 {
		_, err := s.QuarantineDigest(ctx, fixtureQuarantine)
		steps = append(steps, err)
	}
	if version >= 5 {
		_, err := s.CreateSubject(ctx, store.Subject{Name: "sub", TokenHash: []byte("fixture sub token hash")})
		steps = append(steps, err)
		_, err = s.PutScript(ctx, store.Script{Name: "sub_app", Source: []byte("- t:\n  - workers: \"*\"\n"), Owner: "sub"})
		steps = append(steps, err, s.CreateModule(ctx, "mine", "sub"))
	}
	return errors.Join(steps...)
}

// fixtureQuarantine is stored from schema version 4 on.
var fixtureQuarantine = store.Quarantine{Digest: "sha256:cc", Reason: "the agent died while running this code",
	Agent: "ag_00000000000000f1", Since: fixtureSeen}

// checkFixtureQuarantine checks the quarantine of a version 4 fixture, or
// that there is none before.
func checkFixtureQuarantine(t *testing.T, s store.Store, version uint64) {
	t.Helper()
	qs, err := s.ListQuarantine(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if version < 4 {
		if len(qs) != 0 {
			t.Fatalf("ListQuarantine of a version %d file = %+v, want none", version, qs)
		}
		return
	}
	if len(qs) != 1 || qs[0].Created.IsZero() {
		t.Fatalf("ListQuarantine = %+v", qs)
	}
	want := fixtureQuarantine
	want.Created = qs[0].Created
	if !reflect.DeepEqual(qs[0], want) {
		t.Fatalf("ListQuarantine = %+v, want %+v", qs[0], want)
	}
}

func fixtureActivationID(i int) string { return fmt.Sprintf("01FIXTURE%017d", i) }

// fixtureActivations are recorded from schema version 3 on: an ok one with
// two sinks (the first delivered, the second failed once), a failed one, and
// an ok one without sinks.
func fixtureActivations() []store.ActivationWithSinks {
	return []store.ActivationWithSinks{
		{Activation: store.Activation{ID: fixtureActivationID(1), Module: "math", Function: "add", Digest: "sha256:aa",
			Agent: "ag_00000000000000f1", Source: "local-mqtt", Output: []byte(`{"sum":3}`),
			Started: fixtureSeen, Duration: 1234567 * time.Nanosecond},
			Sinks: [][]byte{[]byte(`{"type":"couchdb","params":{"url":"http://a/db"}}`), []byte(`{"type":"couchdb","params":{"url":"http://b/db"}}`)}},
		{Activation: store.Activation{ID: fixtureActivationID(2), Module: "math", Function: "add", Digest: "sha256:aa",
			Source: "api", Code: 3, Message: "function trapped", Started: fixtureSeen.Add(time.Second), Duration: time.Millisecond},
			Sinks: [][]byte{[]byte(`{"type":"couchdb"}`)}},
		{Activation: store.Activation{ID: fixtureActivationID(3), Module: "_", Function: "hello", Digest: "sha256:bb",
			Agent: "ag_00000000000000f1", Source: "local-api", Output: []byte{}, Started: fixtureSeen.Add(2 * time.Second)}},
	}
}

// checkFixtureActivations checks the activations and deliveries of a
// version 3 fixture.
func checkFixtureActivations(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	for _, want := range fixtureActivations() {
		a, err := s.GetActivation(ctx, want.ID)
		if err != nil || a.Recorded.IsZero() {
			t.Fatalf("GetActivation %s = %+v, %v", want.ID, a, err)
		}
		want.Recorded = a.Recorded
		if !reflect.DeepEqual(a, want.Activation) {
			t.Fatalf("GetActivation %s = %+v, want %+v", want.ID, a, want.Activation)
		}
	}
	as, err := s.ListActivations(ctx, store.ActivationFilter{Module: "math", Function: "add"})
	if err != nil || len(as) != 2 || as[0].ID != fixtureActivationID(1) || as[1].ID != fixtureActivationID(2) {
		t.Fatalf("ListActivations of math/add = %+v, %v", as, err)
	}
	// activationsbyrecorded (version 6) holds them too, also in a file
	// upgraded from before it.
	byRec, err := s.ListActivations(ctx, store.ActivationFilter{Order: store.OrderRecorded})
	if err != nil || len(byRec) != len(fixtureActivations()) {
		t.Fatalf("ListActivations in recorded order = %d, %v; want %d", len(byRec), err, len(fixtureActivations()))
	}
	if ds, err := s.PendingDeliveries(ctx, fixtureLater.Add(-time.Second), 0); err != nil || len(ds) != 0 {
		t.Fatalf("PendingDeliveries before the retry = %+v, %v", ds, err)
	}
	ds, err := s.PendingDeliveries(ctx, fixtureLater, 0)
	if err != nil || len(ds) != 1 || ds[0].ActivationID != fixtureActivationID(1) || ds[0].SinkIndex != 1 ||
		ds[0].Attempts != 1 || ds[0].LastError != "couchdb down" || string(ds[0].Output) != `{"sum":3}` ||
		string(ds[0].Sink) != `{"type":"couchdb","params":{"url":"http://b/db"}}` {
		t.Fatalf("PendingDeliveries = %+v, %v", ds, err)
	}
	if fs, err := s.SinkFailures(ctx, "math", "add"); err != nil || !reflect.DeepEqual(fs, ds) {
		t.Fatalf("SinkFailures = %+v, %v; want %+v", fs, err, ds)
	}
}

// wantNoActivations checks that s has no activation and no queued
// delivery, as a file from before version 3 must not.
func wantNoActivations(t *testing.T, s store.Store) {
	t.Helper()
	if as, err := s.ListActivations(t.Context(), store.ActivationFilter{}); err != nil || len(as) != 0 {
		t.Fatalf("ListActivations = %+v, %v; want none", as, err)
	}
	if ds, err := s.PendingDeliveries(t.Context(), fixtureLater, 0); err != nil || len(ds) != 0 {
		t.Fatalf("PendingDeliveries = %+v, %v; want none", ds, err)
	}
}

// checkFixtureData checks that s holds the fixture contents of schema version
// (and maybe more).
func checkFixtureData(t *testing.T, s store.Store, version uint64) {
	t.Helper()
	ctx := t.Context()
	mods, err := s.ListModules(ctx)
	want := []store.Module{{Name: "_"}, {Name: "math"}} // made before owners: the admin's
	if version >= 5 {
		want = append(want, store.Module{Name: "mine", Owner: "sub"})
	}
	if err != nil || !reflect.DeepEqual(mods, want) {
		t.Fatalf("ListModules = %+v, %v; want %+v", mods, err, want)
	}
	if version >= 5 {
		if sc, err := s.GetScript(ctx, "sub_app"); err != nil || sc.Owner != "sub" {
			t.Fatalf("GetScript sub_app = %+v, %v", sc, err)
		}
	}
	code, digest := storetest.Code("fixture")
	fn, err := s.GetFunction(ctx, "math", "add")
	if err != nil || fn.Digest != digest || fn.ABI != "funless-v1" || fn.Spec.Metadata.Tag != "t" || fn.Unreadable != nil || fn.Created.IsZero() {
		t.Fatalf("GetFunction = %+v, %v", fn, err)
	}
	if got, err := s.Code(ctx, digest); err != nil || string(got) != string(code) {
		t.Fatalf("Code = %q, %v", got, err)
	}
	if sub, err := s.SubjectByTokenHash(ctx, []byte("fixture token hash")); err != nil || sub.Name != "admin" || !sub.Admin {
		t.Fatalf("SubjectByTokenHash = %+v, %v", sub, err)
	}
	if sc, err := s.GetScript(ctx, "app"); err != nil || string(sc.Source) != "- t:\n  - workers: \"*\"\n" || sc.Owner != "" {
		t.Fatalf("GetScript = %+v, %v", sc, err)
	}
	if version < 2 {
		return
	}
	jts, err := s.ListJoinTokens(ctx)
	if err != nil {
		t.Fatalf("ListJoinTokens: %v", err)
	}
	var ids []string
	for _, jt := range jts {
		ids = append(ids, jt.ID)
	}
	if strings.Join(ids, ",") != "jt_00000001,jt_00000002,jt_00000003" {
		t.Fatalf("ListJoinTokens = %+v", jts)
	}
	if jt, err := s.JoinTokenByHash(ctx, []byte("fixture join secret later")); err != nil || !jt.Expires.Equal(fixtureLater) {
		t.Fatalf("JoinTokenByHash later = %+v, %v", jt, err)
	}
	if jt, err := s.JoinTokenByHash(ctx, []byte("fixture join secret never")); err != nil || !jt.Expires.IsZero() {
		t.Fatalf("JoinTokenByHash never = %+v, %v", jt, err)
	}
	if _, err := s.JoinTokenByHash(ctx, []byte("fixture join secret before")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("JoinTokenByHash of an expired token: %v, want ErrNotFound", err)
	}
	a, err := s.AgentByID(ctx, "ag_00000000000000f1")
	if err != nil || a.Name != "fixture edge" || string(a.CredentialHash) != "fixture credential" ||
		strings.Join(a.Labels, ",") != "zone=eu,arch=arm64,gpu=no" || !a.LastSeen.Equal(fixtureSeen) || a.Created.IsZero() {
		t.Fatalf("AgentByID = %+v, %v", a, err)
	}
}

// wantNoAgents checks that s has neither join tokens nor agents, as a file
// from before version 2 must not.
func wantNoAgents(t *testing.T, s store.Store) {
	t.Helper()
	jts, err := s.ListJoinTokens(t.Context())
	if err != nil || len(jts) != 0 {
		t.Fatalf("ListJoinTokens = %+v, %v; want none", jts, err)
	}
	as, err := s.ListAgents(t.Context())
	if err != nil || len(as) != 0 {
		t.Fatalf("ListAgents = %+v, %v; want none", as, err)
	}
}

// TestEmbeddedReadsOldFiles opens the file written by every schema version
// (testdata/embedded-v<N>.db) so that a change to the file format cannot go
// unnoticed; the cleanup check then sees each upgraded to the current version.
func TestEmbeddedReadsOldFiles(t *testing.T) {
	t.Parallel()
	for v := uint64(1); v <= store.EmbeddedVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			s, _ := openEmbeddedAt(t, copyFixture(t, v))
			checkFixtureData(t, s, v)
			if v < 2 {
				wantNoAgents(t, s)
			}
			if v < 3 {
				wantNoActivations(t, s)
			} else {
				checkFixtureActivations(t, s)
			}
			checkFixtureQuarantine(t, s, v)
		})
	}
}

// TestEmbeddedUpgradesVersion1File opens a version 1 file: it is upgraded in
// place, keeps its data, takes join tokens and agents, and keeps them too.
func TestEmbeddedUpgradesVersion1File(t *testing.T) {
	t.Parallel()
	path := copyFixture(t, 1)
	if v := fileVersion(t, path); v != 1 {
		t.Fatalf("meta/version of %s = %d, want 1", fixtureFile(1), v)
	}
	ctx := t.Context()
	s, reopen := openEmbeddedAt(t, path)
	checkFixtureData(t, s, 1)
	wantNoAgents(t, s)
	jt, err := s.CreateJoinToken(ctx, store.JoinToken{ID: "jt_upgraded", SecretHash: []byte("upgraded secret")})
	if err != nil {
		t.Fatalf("CreateJoinToken after upgrade: %v", err)
	}
	a, err := s.CreateAgent(ctx, store.Agent{ID: "ag_0000000000000001", Name: "upgraded",
		CredentialHash: []byte("upgraded credential"), Labels: []string{"k=v"}})
	if err != nil {
		t.Fatalf("CreateAgent after upgrade: %v", err)
	}
	closeUpgraded(t, s, path)

	s = reopen(t)
	checkFixtureData(t, s, 1)
	if got, err := s.ListJoinTokens(ctx); err != nil || !reflect.DeepEqual(got, []store.JoinToken{jt}) {
		t.Fatalf("ListJoinTokens after reopen = %+v, %v; want %+v", got, err, jt)
	}
	if got, err := s.ListAgents(ctx); err != nil || !reflect.DeepEqual(got, []store.Agent{a}) {
		t.Fatalf("ListAgents after reopen = %+v, %v; want %+v", got, err, a)
	}
}

// closeUpgraded closes an upgraded store and checks its file: the current
// version, and consistent.
func closeUpgraded(t *testing.T, s store.Store, path string) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := fileVersion(t, path); v != store.EmbeddedVersion {
		t.Fatalf("meta/version after upgrade = %d, want %d", v, store.EmbeddedVersion)
	}
	if err := store.CheckEmbeddedFile(path); err != nil {
		t.Fatalf("upgraded file: %v", err)
	}
}

// TestEmbeddedUpgradesVersion2File opens a version 2 file: it is upgraded in
// place, keeps its data, records activations and queues deliveries, and
// keeps them too.
func TestEmbeddedUpgradesVersion2File(t *testing.T) {
	t.Parallel()
	path := copyFixture(t, 2)
	if v := fileVersion(t, path); v != 2 {
		t.Fatalf("meta/version of %s = %d, want 2", fixtureFile(2), v)
	}
	ctx := t.Context()
	s, reopen := openEmbeddedAt(t, path)
	checkFixtureData(t, s, 2)
	wantNoActivations(t, s)
	n, err := s.RecordActivations(ctx, fixtureActivations())
	if err != nil || n != len(fixtureActivations()) {
		t.Fatalf("RecordActivations after upgrade = %d, %v", n, err)
	}
	if err := errors.Join(s.DeliveryDone(ctx, fixtureActivationID(1), 0),
		s.DeliveryFailed(ctx, fixtureActivationID(1), 1, "couchdb down", fixtureLater)); err != nil {
		t.Fatal(err)
	}
	closeUpgraded(t, s, path)
	s = reopen(t)
	checkFixtureData(t, s, 2)
	checkFixtureActivations(t, s)
}

// TestEmbeddedUpgradesVersion3File opens a version 3 file: it is upgraded
// in place, keeps its data, takes a quarantine, and keeps it too.
func TestEmbeddedUpgradesVersion3File(t *testing.T) {
	t.Parallel()
	path := copyFixture(t, 3)
	if v := fileVersion(t, path); v != 3 {
		t.Fatalf("meta/version of %s = %d, want 3", fixtureFile(3), v)
	}
	ctx := t.Context()
	s, reopen := openEmbeddedAt(t, path)
	checkFixtureData(t, s, 3)
	checkFixtureActivations(t, s)
	checkFixtureQuarantine(t, s, 3)
	if created, err := s.QuarantineDigest(ctx, fixtureQuarantine); err != nil || !created {
		t.Fatalf("QuarantineDigest after upgrade = %v, %v", created, err)
	}
	closeUpgraded(t, s, path)
	s = reopen(t)
	checkFixtureData(t, s, 3)
	checkFixtureActivations(t, s)
	checkFixtureQuarantine(t, s, 4)
}

// TestEmbeddedWriteFixture writes testdata/embedded-v<N>.db for the current
// schema version N when WISP_UPDATE_TESTDATA=1. Only do that when the
// version has just been bumped: the point of each file is that it was
// written by the build of its version, so older files are never rewritten.
func TestEmbeddedWriteFixture(t *testing.T) {
	if os.Getenv("WISP_UPDATE_TESTDATA") != "1" {
		t.Skipf("set WISP_UPDATE_TESTDATA=1 to rewrite %s", fixtureFile(store.EmbeddedVersion))
	}
	path := filepath.Join(t.TempDir(), "wisp.db")
	s, err := store.OpenEmbedded(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(writeFixtureData(t.Context(), s, store.EmbeddedVersion), s.Close()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(fixtureFile(store.EmbeddedVersion))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, f); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
