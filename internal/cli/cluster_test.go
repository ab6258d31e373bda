package cli

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSeveralHostsSettings: the controllers of a cluster come as a list
// from every source, are written back as a YAML list, and a pin needs
// every one of them to be https://.
func TestSeveralHostsSettings(t *testing.T) {
	e := homeEnv(t)
	if code, _, stderr := runCLI(t, e, "config", "set", "host", "a:1, https://b:2/v1/,a:1"); code != 0 {
		t.Fatal(stderr)
	}
	path := filepath.Join(e["HOME"], ".config", "wisp", "config.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "api_host:\n    - http://a:1\n    - https://b:2\n" {
		t.Fatalf("config file:\n%s", b)
	}
	for _, tt := range []struct {
		name string
		env  env
		args []string
		want string
	}{
		{"file list", nil, nil, "http://a:1,https://b:2\n"},
		{"env list", env{"WISP_HOST": "http://c:3,d:4"}, nil, "http://c:3,http://d:4\n"},
		{"flag list", env{"WISP_HOST": "http://c:3"}, []string{"--host", "e:5,f:6"}, "http://e:5,http://f:6\n"},
		{"one host", nil, []string{"--host", "g:7"}, "http://g:7\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ee := env{"HOME": e["HOME"]}
			for k, v := range tt.env {
				ee[k] = v
			}
			code, stdout, stderr := runCLI(t, ee, append([]string{"config", "get", "host"}, tt.args...)...)
			if code != 0 || stdout != tt.want {
				t.Fatalf("exit %d, %q %q; want %q", code, stdout, stderr, tt.want)
			}
		})
	}
	// A file written by hand: a YAML list whose items may hold commas too.
	hand := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(hand, []byte("api_host: [x:1, \"y:2,z:3\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, env{}, "config", "get", "host", "--config", hand); code != 0 || stdout != "http://x:1,http://y:2,http://z:3\n" {
		t.Fatalf("hand-written list: %d %q %q", code, stdout, stderr)
	}
	// Wrong lists.
	pin := "sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"mod", "list", "--host", "https://a:1,,https://b:2"}, "an empty address in the list"},
		{[]string{"mod", "list", "--host", "https://a:1,ftp://b"}, "is not an http(s) address"},
		{[]string{"mod", "list", "--host", "https://a:1,http://b:2", "--tls-fingerprint", pin}, "controller address http://b:2 (from --host) is not https://"},
	} {
		code, _, stderr := runCLI(t, homeEnv(t), tt.args...)
		if code != ExitError || !strings.Contains(stderr, tt.want) {
			t.Fatalf("wisp %s: exit %d %q; want %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

// clusterMember answers every request with 200 and its name as data, and
// counts the requests its handler saw.
func clusterMember(t *testing.T, name string, status int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status == 200 {
			io.WriteString(w, `{"data":{"served_by":"`+name+`"}}`)
		} else {
			io.WriteString(w, `{"errors":{"detail":"`+name+` is shutting down"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// killedWhileHandling reads one request per connection and closes the
// connection without answering: a controller killed while its handler ran.
func killedWhileHandling(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var seen atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					if req.Header.Get("Expect") == "100-continue" {
						io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
					}
					io.Copy(io.Discard, req.Body)
					seen.Add(1)
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &seen
}

// TestFailover: the CLI's requests move past controllers that cannot be
// reached or answer 503, never past one that may have run the request,
// and every failure is one line naming the controllers.
func TestFailover(t *testing.T) {
	live, liveHits := clusterMember(t, "live", 200)
	draining, drainingHits := clusterMember(t, "draining", 503)
	dead1, dead2 := deadHost(t), deadHost(t)
	killed, killedSeen := killedWhileHandling(t)
	invoke := func(hosts ...string) (int, string, string) {
		t.Helper()
		// The first host is tried first only by chance (a random start):
		// repeat so that every order is met.
		return runCLI(t, env{"HOME": t.TempDir(), "WISP_TOKEN": "t"}, "fn", "invoke", "f", "-o", "json", "--host", strings.Join(hosts, ","))
	}
	for range 8 {
		if code, stdout, stderr := invoke(dead1, live.URL, dead2); code != 0 || !strings.Contains(stdout, `"served_by": "live"`) {
			t.Fatalf("dead, live, dead: exit %d %q %q", code, stdout, stderr)
		}
		if code, stdout, stderr := invoke(draining.URL, live.URL); code != 0 || !strings.Contains(stdout, `"served_by": "live"`) {
			t.Fatalf("draining, live: exit %d %q %q", code, stdout, stderr)
		}
	}
	if liveHits.Load() != 16 {
		t.Fatalf("the live controller ran %d invocations, want 16", liveHits.Load())
	}
	if drainingHits.Load() == 0 {
		t.Fatal("the draining controller was never tried first (random start)")
	}

	code, _, stderr := invoke(dead1, dead2)
	if code != ExitError || strings.Count(stderr, "\n") != 1 ||
		!strings.Contains(stderr, "cannot reach any of the controllers (") || !strings.Contains(stderr, dead1+": connection refused") ||
		!strings.Contains(stderr, dead2+": connection refused") {
		t.Fatalf("all dead: exit %d %q", code, stderr)
	}
	// Every controller draining: the last 503 is the answer.
	code, _, stderr = invoke(draining.URL)
	if code != ExitError || !strings.Contains(stderr, "draining is shutting down") {
		t.Fatalf("draining: exit %d %q", code, stderr)
	}

	// A controller that broke the connection after the invocation was
	// sent may have run it: the CLI says so and does not send it again.
	before := liveHits.Load()
	for range 8 {
		code, stdout, stderr := invoke(killed, live.URL)
		switch {
		case code == 0 && strings.Contains(stdout, `"served_by": "live"`):
			// the live one was tried first
		case code == ExitError && strings.Contains(stderr, "the connection to the controller at "+killed+" broke after the request was sent") &&
			strings.Contains(stderr, "not sent to another controller") && strings.Count(stderr, "\n") == 1:
		default:
			t.Fatalf("killed, live: exit %d %q %q", code, stdout, stderr)
		}
	}
	if got := liveHits.Load() - before + killedSeen.Load(); got != 8 {
		t.Fatalf("8 invocations ran %d times in all (live %d, killed %d)", got, liveHits.Load()-before, killedSeen.Load())
	}
	if killedSeen.Load() == 0 {
		t.Fatal("the killed controller was never tried first (random start)")
	}
	// A GET is sent again.
	if code, stdout, stderr := runCLI(t, env{"HOME": t.TempDir(), "WISP_TOKEN": "t"}, "fn", "get", "f", "-o", "json", "--host", killed+","+live.URL); code != 0 || !strings.Contains(stdout, "live") {
		t.Fatalf("GET through killed, live: exit %d %q %q", code, stdout, stderr)
	}
}
