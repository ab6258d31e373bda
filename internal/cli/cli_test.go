package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/version"
)

// env is a fake environment for Run.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// runCLI runs the CLI in-process and returns its exit code and output.
func runCLI(t testing.TB, e env, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr, e.get)
	return code, stdout.String(), stderr.String()
}

// homeEnv is an environment whose config file lives in a fresh temp dir.
func homeEnv(t testing.TB) env {
	return env{"HOME": t.TempDir()}
}

// deadHost is an address where nothing listens.
func deadHost(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func writeFile(t testing.TB, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notWasm := writeFile(t, dir, "notwasm.wasm", []byte("this is not wasm"))
	small := writeFile(t, dir, "small.wasm", append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, 2000)...))
	big := filepath.Join(dir, "big.wasm")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("\x00asm\x01\x00\x00\x00"))
	f.Truncate(DefaultMaxUpload + 1) // sparse: cheap to make
	f.Close()
	missing := filepath.Join(dir, "missing.wasm")
	dead := deadHost(t)

	tests := []struct {
		name string
		args []string
		code int
		want string // substring of the one stderr line
	}{
		{"unknown flag", []string{"fn", "upload", "--bogus", "f", small}, ExitUsage, "unknown flag: --bogus (see 'wisp fn upload --help')"},
		{"unknown shorthand", []string{"fn", "invoke", "-z", "f"}, ExitUsage, "unknown shorthand flag: 'z'"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, `unknown command "frobnicate" for "wisp"`},
		{"unknown subcommand suggests", []string{"fn", "lst"}, ExitUsage, `did you mean "list"?`},
		{"upload without file", []string{"fn", "upload", "f"}, ExitUsage, "want <name> <file.wasm>, got 1 argument(s)"},
		{"invoke without name", []string{"fn", "invoke"}, ExitUsage, "want <name>"},
		{"too many arguments", []string{"mod", "list", "x"}, ExitUsage, "takes no arguments"},
		{"bad output format", []string{"mod", "list", "-o", "yaml"}, ExitUsage, `output format "yaml": want text or json`},
		{"missing file", []string{"fn", "upload", "f", missing}, ExitError, "file " + missing + " does not exist"},
		{"directory", []string{"fn", "upload", "f", dir}, ExitError, "is a directory"},
		{"not wasm", []string{"fn", "upload", "f", notWasm}, ExitError, "is not a wasm module (it does not start with the \\0asm magic)"},
		{"over the default limit", []string{"fn", "upload", "f", big}, ExitError, "is 16.0 MiB, over the upload limit of 16.0 MiB"},
		{"over --max-size", []string{"fn", "update", "f", small, "--max-size", "1024"}, ExitError, "is 2.0 KiB, over the upload limit of 1.0 KiB"},
		{"bad events", []string{"fn", "upload", "f", small, "--events", "{nope"}, ExitError, "--events is not valid JSON"},
		{"events not an array", []string{"fn", "upload", "f", small, "--events", `{"type":"mqtt"}`}, ExitError, "--events must be a JSON array"},
		{"metadata not an object", []string{"fn", "upload", "f", small, "--metadata", `[1]`}, ExitError, "--metadata must be a JSON object"},
		{"bad function name", []string{"fn", "upload", "a-b", small}, ExitError, `invalid function name "a-b"`},
		{"bad module name", []string{"fn", "get", "f", "-m", "x/y"}, ExitError, `invalid module name "x/y"`},
		{"args and json", []string{"fn", "invoke", "f", "-a", "x=1", "-j", "{}"}, ExitUsage, "use -a key=value or -j JSON, not both"},
		{"json not an object", []string{"fn", "invoke", "f", "-j", "[1,2]"}, ExitError, "-j must be a JSON object"},
		{"arg without =", []string{"fn", "invoke", "f", "-a", "name"}, ExitUsage, `-a "name": want key=value`},
		{"bad since", []string{"activation", "list", "--since", "yesterday"}, ExitUsage, "--since"},
		{"bad limit", []string{"activation", "list", "--limit", "0"}, ExitUsage, "--limit 0: want 1 to 1000"},
		{"bad ttl", []string{"token", "create", "--ttl", "soon"}, ExitUsage, `invalid argument "soon" for "--ttl"`},
		{"unknown config key", []string{"config", "set", "colour", "red"}, ExitUsage, `unknown setting "colour"`},
		{"bad host", []string{"mod", "list", "--host", "ftp://x"}, ExitError, `is not an http(s) address`},
		{"unreachable host", []string{"mod", "list", "--host", dead}, ExitError, "cannot reach the controller at " + dead + ": connection refused"},
		{"unreachable host, host:port form", []string{"fn", "invoke", "f", "--host", strings.TrimPrefix(dead, "http://")}, ExitError, "cannot reach the controller at " + dead + ": connection refused"},
		{"script file missing", []string{"app", "create", "s", missing}, ExitError, "does not exist"},
		{"new without language", []string{"fn", "new", "f"}, ExitUsage, "choose a language with -l c|go|rust"},
		{"new with unknown language", []string{"fn", "new", "f", "-l", "cobol", "-d", filepath.Join(dir, "p")}, ExitError, `unknown language "cobol"`},
		{"build without project", []string{"fn", "build", dir}, ExitError, "no wisp.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, homeEnv(t), tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.want)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "wisp: ") {
				t.Errorf("stderr is not one 'wisp: ' line: %q", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

// fakeController answers every request with status and body and records the last one.
func fakeController(t *testing.T, status int, body string) (*httptest.Server, *http.Request) {
	var last http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		last = *r
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &last
}

func TestErrorAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		token  string
		args   []string
		want   string
	}{
		{"wrong token", 401, `{"errors":{"detail":"invalid token"}}`, "wisp_wrong", []string{"mod", "list"},
			"refused the token (it is wrong or expired: invalid token); set a valid one with 'wisp config set token <token>', WISP_TOKEN or --token"},
		{"no token", 401, `{"errors":{"detail":"missing token"}}`, "", []string{"fn", "list"},
			"no token set: the controller at"},
		{"not admin", 403, `{"errors":{"detail":"Forbidden"}}`, "wisp_user", []string{"agent", "list"},
			"Forbidden (this needs the admin token)"},
		{"detail", 404, `{"errors":{"detail":"Function not found"}}`, "t", []string{"fn", "get", "f"},
			"wisp: Function not found\n"},
		{"field errors", 422, `{"errors":{"name":["must contain only alphanumeric characters and underscores"]}}`, "t", []string{"mod", "create", "m"},
			"name must contain only alphanumeric characters and underscores"},
		{"multi-line detail", 500, `{"errors":{"detail":"trap:\nunreachable"}}`, "t", []string{"fn", "invoke", "f"},
			"wisp: trap: unreachable\n"},
		{"not json", 502, `<html>bad gateway</html>`, "t", []string{"mod", "list"},
			"answered 502 Bad Gateway"},
		{"no worker", 503, `{"errors":{"detail":"No worker available"}}`, "t", []string{"fn", "invoke", "f", "-a", "name=Ada"},
			"wisp: No worker available\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeController(t, tt.status, tt.body)
			e := homeEnv(t)
			e["WISP_HOST"] = srv.URL
			e["WISP_TOKEN"] = tt.token
			code, stdout, stderr := runCLI(t, e, tt.args...)
			if code != ExitError || stdout != "" {
				t.Errorf("exit %d stdout %q, want 1 and nothing", code, stdout)
			}
			if !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tt.want)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	dir := t.TempDir()
	wasm := writeFile(t, dir, "f.wasm", []byte("\x00asm\x01\x00\x00\x00"))
	tests := []struct {
		name       string
		args       []string
		method     string
		path       string
		query      string
		answer     string
		wantStdout string
	}{
		{"invoke with -a", []string{"fn", "invoke", "hello", "-a", "name=Ada"}, "POST", "/v1/fn/_/hello", "",
			`{"data":{"payload": "Hello Ada!"}}`, "{\"payload\":\"Hello Ada!\"}\n"},
		{"invoke in a module", []string{"fn", "invoke", "hello", "-m", "m1", "-j", `{"n":1}`, "--script", "s"}, "POST", "/v1/fn/m1/hello", "",
			`{"data":"plain"}`, "\"plain\"\n"},
		{"upload", []string{"fn", "upload", "hello", wasm, "-m", "m1", "--wait"}, "POST", "/v1/fn/m1", "",
			`{"data":{"name":"hello"}}`, "uploaded function hello in module m1 (8 B)\n"},
		{"update", []string{"fn", "update", "hello", wasm}, "PUT", "/v1/fn/_/hello", "",
			`{"data":{"name":"hello"}}`, "updated function hello in module _ (8 B)\n"},
		{"upload json", []string{"fn", "upload", "hello", wasm, "-o", "json"}, "POST", "/v1/fn/_", "",
			`{"data":{"name":"hello"}}`, "{\n  \"name\": \"hello\"\n}\n"},
		{"mod list", []string{"mod", "list"}, "GET", "/v1/fn", "",
			`{"data":[{"name":"_"},{"name":"long_module"}]}`, "NAME\n_\nlong_module\n"},
		{"mod rename", []string{"mod", "rename", "a", "b"}, "PUT", "/v1/fn/a", "",
			`{"data":{"name":"b"}}`, "renamed module a to b\n"},
		{"mod delete", []string{"mod", "delete", "a"}, "DELETE", "/v1/fn/a", "", ``, "deleted module a and its functions\n"},
		{"fn list", []string{"fn", "list", "-m", "m1"}, "GET", "/v1/fn/m1", "",
			`{"data":{"name":"m1","functions":[{"name":"a"},{"name":"bb"}]}}`, "NAME  MODULE\na     m1\nbb    m1\n"},
		{"activation list", []string{"activation", "list", "-m", "m", "-f", "f", "--limit", "5", "--after", "X"}, "GET", "/v1/activations", "after=X&function=f&limit=5&module=m",
			`{"data":[]}`, "ID  FUNCTION  STATUS  SOURCE  AGENT  STARTED  DURATION\n"},
		{"activation get, truncated", []string{"activation", "get", "01ABC"}, "GET", "/v1/activations/01ABC", "",
			`{"data":{"id":"01ABC","module":"_","function":"f","status":"success","output":"{\"s\":\"ab","truncated":true,"started":"2026-01-02T03:04:05Z","duration_us":1500}}`,
			"id:        01ABC\nfunction:  _/f\nstatus:    success\nsource:    \nagent:     \nstarted:   2026-01-02 03:04:05\nduration:  1.5ms\ndigest:    \n" +
				"output:    \"{\\\"s\\\":\\\"ab\"\ntruncated: yes: the record kept only the beginning of the output or message\n"},
		{"token create", []string{"token", "create", "--ttl", "1h"}, "POST", "/v1/admin/tokens", "",
			`{"data":{"id":"jt_1","token":"wispjoin1.x.y"}}`, "wispjoin1.x.y\n"},
		{"user create", []string{"admin", "user", "create", "bob"}, "POST", "/v1/admin/subjects", "",
			`{"data":{"name":"bob","token":"wisp_t"}}`, "wisp_t\n"},
		{"subject rotate", []string{"admin", "subject", "rotate", "bob"}, "POST", "/v1/admin/subjects/bob/rotate", "",
			`{"data":{"name":"bob","token":"wisp_u"}}`, "wisp_u\n"},
		{"subject delete", []string{"admin", "subject", "delete", "bob"}, "DELETE", "/v1/admin/subjects/bob", "",
			"", "deleted user bob; its activations are the admin's now\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := 200
			if tt.answer == "" {
				status = 204
			}
			srv, last := fakeController(t, status, tt.answer)
			e := homeEnv(t)
			e["WISP_TOKEN"] = "wisp_tok"
			code, stdout, stderr := runCLI(t, e, append(tt.args, "--host", srv.URL)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if last.Method != tt.method || last.URL.Path != tt.path || last.URL.RawQuery != tt.query {
				t.Errorf("request %s %s?%s, want %s %s?%s", last.Method, last.URL.Path, last.URL.RawQuery, tt.method, tt.path, tt.query)
			}
			if got := last.Header.Get("Authorization"); got != "Bearer wisp_tok" {
				t.Errorf("Authorization %q", got)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout %q, want %q", stdout, tt.wantStdout)
			}
		})
	}
}

func TestUploadBody(t *testing.T) {
	var got struct {
		fields map[string]string
		code   []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			t.Error(err)
		}
		got.fields = map[string]string{}
		for k, v := range r.MultipartForm.Value {
			got.fields[k] = v[0]
		}
		f, _, err := r.FormFile("code")
		if err != nil {
			t.Error(err)
		} else {
			got.code, _ = io.ReadAll(f)
		}
		w.WriteHeader(201)
		io.WriteString(w, `{"data":{"name":"f"}}`)
	}))
	defer srv.Close()
	code := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{7}, 5<<20)...)
	file := writeFile(t, t.TempDir(), "f.wasm", code)
	e := homeEnv(t)
	e["WISP_PROGRESS"] = "always"
	rc, _, stderr := runCLI(t, e, "fn", "upload", "f", file, "--host", srv.URL, "--wait",
		"--events", `[{"type":"mqtt","params":{"topic":"t"}}]`, "--metadata", `{"tag":"x","capacity":64}`)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	want := map[string]string{"name": "f", "wait_for_workers": "true", "events": `[{"type":"mqtt","params":{"topic":"t"}}]`, "metadata": `{"tag":"x","capacity":64}`}
	for k, v := range want {
		if got.fields[k] != v {
			t.Errorf("field %s = %q, want %q", k, got.fields[k], v)
		}
	}
	if _, ok := got.fields["sinks"]; ok {
		t.Error("sinks sent although not given")
	}
	if !bytes.Equal(got.code, code) {
		t.Errorf("code part: %d bytes, want %d", len(got.code), len(code))
	}
	if !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "uploading "+file) {
		t.Errorf("no progress bar on stderr: %q", stderr)
	}
	// Not a terminal and not forced: no bar.
	rc, _, stderr = runCLI(t, homeEnv(t), "fn", "upload", "f", file, "--host", srv.URL)
	if rc != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and no progress bar", rc, stderr)
	}
}

func TestConfig(t *testing.T) {
	e := env{"XDG_CONFIG_HOME": t.TempDir()}
	path := filepath.Join(e["XDG_CONFIG_HOME"], "wisp", "config.yaml")

	if code, _, stderr := runCLI(t, e, "config", "set", "host", "ctl.example:4000/v1/"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCLI(t, e, "config", "set", "api_token", "wisp_secret_token_123"); code != 0 {
		t.Fatal(stderr)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if string(b) != "api_host: http://ctl.example:4000\napi_token: wisp_secret_token_123\n" {
		t.Errorf("config file:\n%s", b)
	}

	tests := []struct {
		name string
		env  env
		args []string
		want string
	}{
		{"file host", nil, []string{"config", "get", "host"}, "http://ctl.example:4000\n"},
		{"file token", nil, []string{"config", "get", "token"}, "wisp_secret_token_123\n"},
		{"env beats file", env{"WISP_HOST": "https://env:1"}, []string{"config", "get", "host"}, "https://env:1\n"},
		{"flag beats env", env{"WISP_HOST": "https://env:1"}, []string{"config", "get", "host", "--host", "http://flag:2"}, "http://flag:2\n"},
		{"env token", env{"WISP_TOKEN": "wisp_env"}, []string{"config", "get", "api_token"}, "wisp_env\n"},
		{"overview masks the token", env{"WISP_HOST": "https://env:1"}, []string{"config", "get"},
			"KEY          VALUE                                           FROM\napi_host     https://env:1                                   WISP_HOST\napi_token    wisp_secr…_123                                  " + path + "\nconfig_file  " + path + "  -\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e2 := env{"XDG_CONFIG_HOME": e["XDG_CONFIG_HOME"]}
			for k, v := range tt.env {
				e2[k] = v
			}
			code, stdout, stderr := runCLI(t, e2, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if tt.name == "overview masks the token" {
				if strings.Contains(stdout, "wisp_secret_token_123") || !strings.Contains(stdout, "wisp_secr…_123") || !strings.Contains(stdout, "WISP_HOST") {
					t.Errorf("overview:\n%s", stdout)
				}
				return
			}
			if stdout != tt.want {
				t.Errorf("stdout %q, want %q", stdout, tt.want)
			}
		})
	}

	// --config and the default location under HOME.
	other := filepath.Join(t.TempDir(), "c.yaml")
	if code, _, stderr := runCLI(t, env{}, "config", "set", "host", "h:1", "--config", other); code != 0 {
		t.Fatal(stderr)
	}
	home := t.TempDir()
	if code, _, stderr := runCLI(t, env{"HOME": home}, "config", "set", "token", "x"); code != 0 {
		t.Fatal(stderr)
	}
	if _, err := os.Stat(filepath.Join(home, ".config", "wisp", "config.yaml")); err != nil {
		t.Error(err)
	}
	code, stdout, _ := runCLI(t, env{"HOME": home}, "config", "get", "-o", "json")
	var m map[string]string
	if code != 0 || json.Unmarshal([]byte(stdout), &m) != nil || m["api_token"] != "x" || m["api_host"] != DefaultHost {
		t.Errorf("config get -o json: %d %q", code, stdout)
	}

	// WISP_CLI_CONFIG names the file; the former WISP_CONFIG too, with a warning.
	code, stdout, stderr := runCLI(t, env{"HOME": home, "WISP_CLI_CONFIG": other}, "config", "get", "host")
	if code != 0 || stdout != "http://h:1\n" || stderr != "" {
		t.Errorf("WISP_CLI_CONFIG: %d %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, env{"HOME": home, "WISP_CONFIG": other}, "config", "get", "host")
	if code != 0 || stdout != "http://h:1\n" || !strings.Contains(stderr, "WISP_CONFIG is deprecated, use WISP_CLI_CONFIG") {
		t.Errorf("WISP_CONFIG: %d %q %q", code, stdout, stderr)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, stdout, _ := runCLI(t, env{}, args...)
		if code != 0 || stdout != "wisp "+version.Version+"\n" {
			t.Errorf("%s: %d %q", args[0], code, stdout)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, stdout, stderr := runCLI(t, env{}, "completion", shell)
		if code != 0 || !strings.Contains(stdout, "wisp") || len(stdout) < 500 {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(stdout), stderr)
		}
	}
	// Cobra's dynamic completion sees our commands and flag values.
	_, stdout, _ := runCLI(t, env{}, "__complete", "fn", "new", "x", "-l", "")
	for _, l := range []string{"c", "go", "rust"} {
		if !strings.Contains(stdout, l+"\n") {
			t.Errorf("completion of -l lacks %s: %q", l, stdout)
		}
	}
}

func TestHelpOfGroup(t *testing.T) {
	code, stdout, _ := runCLI(t, env{}, "fn")
	if code != 0 || !strings.Contains(stdout, "upload") || !strings.Contains(stdout, "invoke") {
		t.Errorf("wisp fn: %d %q", code, stdout)
	}
}

// FuzzErrorDetail: whatever the controller answers, the error is one line.
func FuzzErrorDetail(f *testing.F) {
	f.Add([]byte(`{"errors":{"detail":"x\ny"}}`))
	f.Add([]byte(`{"errors":{"name":["a","b"],"z":1}}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := &client{host: "http://h", token: "t"}
		for _, status := range []int{400, 401, 403, 500} {
			if msg := c.statusError(status, body).Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("status %d body %q: %q", status, body, msg)
			}
		}
	})
}
