package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testopenapi"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// testStore is one Store implementation the API tests run against.
type testStore struct {
	name string
	open func(t testing.TB) store.Store
}

// testStores are the embedded store and Postgres (skipped, or failed under
// WISP_REQUIRE_SERVICES=1, when Postgres is missing).
func testStores() []testStore {
	return []testStore{
		{"embedded", openEmbedded},
		{"postgres", openPostgres},
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func openEmbedded(t testing.TB) store.Store {
	t.Helper()
	s, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "controller.db"), testLogger(t))
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres opens a store on a fresh schema, dropped on cleanup, as
// controller/store's own tests do.
func openPostgres(t testing.TB) store.Store {
	t.Helper()
	dsn := pgSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenPostgres(ctx, dsn, testLogger(t))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() }) // runs before the schema is dropped
	return s
}

func pgSchema(t testing.TB) string { return testpg.Schema(t, 8) }

// env is a running API server on a port-0 loopback listener.
type env struct {
	t      testing.TB
	st     store.Store
	base   string
	admin  string // the admin's token
	client *http.Client
	spec   *testopenapi.Checker
	server *Server
	// cancel stops the server; stopped is closed when Run returned runErr.
	cancel  context.CancelFunc
	stopped chan struct{}
	runErr  error
}

type envOption func(*Config)

// start runs a Server over st until the test ends, with every request and
// response checked against openapi/openapi.yaml.
func start(t testing.TB, st store.Store, opts ...envOption) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tokenFile, _, err := auth.EnsureAdmin(ctx, st, t.TempDir(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.ReadTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Log: testLogger(t)}
	if ss, ok := st.(store.SecretStore); ok {
		cfg.Secrets = secrets.New(ss, testRing, 0)
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	base := "http://" + ln.Addr().String()
	e := &env{t: t, st: st, base: base, admin: token, spec: testopenapi.Load(t, base), server: srv, cancel: cancel, stopped: stopped}
	go func() {
		e.runErr = srv.Run(ctx, ln)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
			if e.runErr != nil {
				t.Errorf("Run: %v", e.runErr)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	e.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// req is one request of a test.
type req struct {
	method, path string
	body         []byte
	contentType  string
	token        string // "" means the admin's; noToken sends none
	// bad marks a request that is meant to break the spec: only its
	// response is checked against it.
	bad bool
}

const noToken = "-"

// do sends r and returns the status and body. Both are checked against the
// OpenAPI document.
func (e *env) do(r req) (int, []byte) {
	e.t.Helper()
	hr, err := http.NewRequest(r.method, e.base+r.path, bytes.NewReader(r.body))
	if err != nil {
		e.t.Fatal(err)
	}
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	switch r.token {
	case "":
		hr.Header.Set("Authorization", "Bearer "+e.admin)
	case noToken:
	default:
		hr.Header.Set("Authorization", r.token)
	}
	resp, err := e.client.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	e.spec.Check(e.t, hr, r.body, !r.bad, resp, body)
	return resp.StatusCode, body
}

func (e *env) json(method, path string, v any) (int, []byte) {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req{method: method, path: path, body: b, contentType: "application/json"})
}

// form builds a multipart body: fields in order, then files.
type part struct {
	name, value string
	file        bool
	filename    string
}

func multipartBody(t testing.TB, parts ...part) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		var err error
		if p.file {
			fn := p.filename
			if fn == "" {
				fn = p.name + ".bin"
			}
			var fw io.Writer
			fw, err = w.CreateFormFile(p.name, fn)
			if err == nil {
				_, err = io.WriteString(fw, p.value)
			}
		} else {
			err = w.WriteField(p.name, p.value)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

func (e *env) upload(method, path string, parts ...part) (int, []byte) {
	e.t.Helper()
	body, ct := multipartBody(e.t, parts...)
	return e.do(req{method: method, path: path, body: body, contentType: ct})
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func codePart(code []byte) part {
	return part{name: "code", value: string(code), file: true, filename: "f.wasm"}
}

// wantData checks a 2xx answer and decodes its data.
func wantData[T any](t testing.TB, status int, body []byte, wantStatus int) T {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	var out dataBody[T]
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return out.Data
}

// wantError checks an error answer: status, the {"errors":{"detail":...}}
// envelope and nothing else, and that detail contains each of want.
func wantError(t testing.TB, status int, body []byte, wantStatus int, want ...string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	var out errorBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.Errors.Detail == "" {
		t.Fatalf("body %s is not a FunLess error envelope: %v", body, err)
	}
	for _, w := range want {
		if !strings.Contains(out.Errors.Detail, w) {
			t.Fatalf("detail %q does not contain %q", out.Errors.Detail, w)
		}
	}
}

// snapshot is everything the store holds, to check that a refused request
// changed nothing.
type snapshot struct {
	Modules   []store.Module
	Functions []store.Function
	Subjects  []store.Subject
	Scripts   []store.Script
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	ctx := context.Background()
	var s snapshot
	mods, err := e.st.ListModules(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, n := range store.ModuleNames(mods) {
		m, err := e.st.GetModule(ctx, n)
		if err != nil {
			e.t.Fatal(err)
		}
		s.Modules = append(s.Modules, m)
	}
	if s.Functions, err = e.st.ListFunctions(ctx); err != nil {
		e.t.Fatal(err)
	}
	if s.Subjects, err = e.st.ListSubjects(ctx); err != nil {
		e.t.Fatal(err)
	}
	if s.Scripts, err = e.st.ListScripts(ctx); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) wantUnchanged(before snapshot) {
	e.t.Helper()
	if after := e.snapshot(); !reflect.DeepEqual(before, after) {
		e.t.Fatalf("the store changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// headersOnly sends a request's headers announcing a body of n bytes, sends
// no body, and reads the answer: how to see what a server says about a body
// it refuses by its Content-Length.
func (e *env) headersOnly(method, path, contentType string, n int) (int, []byte) {
	e.t.Helper()
	addr := strings.TrimPrefix(e.base, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		method, path, addr, e.admin, contentType, n)
	hr, _ := http.NewRequest(method, e.base+path, nil)
	hr.Header.Set("Content-Type", contentType)
	resp, err := http.ReadResponse(bufio.NewReader(conn), hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.spec.Check(e.t, hr, nil, false, resp, body)
	return resp.StatusCode, body
}
