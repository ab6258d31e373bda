package runtime

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testwait"
)

// TestEnv: a request's env reaches the guest through WASI for both ABIs
// (a wasi-libc reactor's getenv and a WASI command's), and nothing of it
// reaches the next call of the same code.
func TestEnv(t *testing.T) {
	r := newRuntime(t, Config{})
	ctx := context.Background()
	for _, name := range []string{"env_c", "envcmd_c"} {
		d := load(t, r, name)
		t.Run(name, func(t *testing.T) {
			res, err := r.Invoke(ctx, d, Request{Input: []byte(`{"name":"GREETING"}`), Env: []string{"A=1", "GREETING=hé \"there\""}})
			if err != nil || string(res.Output) != `{"value":"hé \"there\""}` {
				t.Fatalf("%s %v", res.Output, err)
			}
			res, err = r.Invoke(ctx, d, Request{Input: []byte(`{"name":"GREETING"}`)})
			if err != nil || string(res.Output) != `{"value":null}` {
				t.Fatalf("without env: %s %v (leaked from the call before?)", res.Output, err)
			}
			res, err = r.Invoke(ctx, d, Request{Input: []byte(`{"name":"EMPTY"}`), Env: []string{"EMPTY="}})
			if err != nil || string(res.Output) != `{"value":""}` {
				t.Fatalf("empty value: %s %v", res.Output, err)
			}
		})
	}
}

// TestEnvNotFromSpares: spare instances are built without env and shared
// by every function of a digest, so a call with env never takes one, and
// one without env never sees another function's.
func TestEnvNotFromSpares(t *testing.T) {
	r := newRuntime(t, Config{SpareThreshold: time.Nanosecond, SpareInstances: 2})
	d := load(t, r, "env_c")
	ctx := context.Background()
	in := []byte(`{"name":"K"}`)
	if _, err := r.Invoke(ctx, d, Request{Input: in}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "two spare instances", func() bool { return r.Stats().Spares == 2 })
	for i, env := range [][]string{{"K=one"}, nil, {"K=two"}, nil} {
		res, err := r.Invoke(ctx, d, Request{Input: in, Env: env})
		want := `{"value":null}`
		if env != nil {
			want = `{"value":"` + strings.TrimPrefix(env[0], "K=") + `"}`
		}
		if err != nil || string(res.Output) != want {
			t.Fatalf("call %d: %s %v, want %s", i, res.Output, err, want)
		}
		if env != nil && res.Spare {
			t.Fatalf("call %d with env served by a spare", i)
		}
	}
}

func TestEnvRefused(t *testing.T) {
	r := newRuntime(t, Config{})
	d := load(t, r, "env_c")
	many := make([]string, MaxEnvVars+1)
	for i := range many {
		many[i] = "V" + strings.Repeat("x", i) + "=1"
	}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"no =", []string{"A"}, "NAME=value"},
		{"bad name", []string{"1A=x"}, "NAME=value"},
		{"empty name", []string{"=x"}, "NAME=value"},
		{"NUL", []string{"A=x\x00y"}, "NUL"},
		{"twice", []string{"A=1", "A=2"}, "twice"},
		{"too many", many, "at most"},
		{"too big", []string{"A=" + strings.Repeat("x", MaxEnvBytes)}, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Invoke(context.Background(), d, Request{Input: []byte(`{}`), Env: tt.env})
			checkErr(t, err, ErrInvalidInput, tt.want)
		})
	}
}

func TestHostAllowed(t *testing.T) {
	tests := []struct {
		pattern, url string
		want         bool
	}{
		{"*", "http://anything.test/x", true},
		{"api.example.com", "http://api.example.com/x", true},
		{"api.example.com", "https://API.example.com:8443/x", true},
		{"api.example.com", "http://api.example.com./x", true},
		{"api.example.com", "http://example.com/x", false},
		{"api.example.com:8443", "https://api.example.com:8443/", true},
		{"api.example.com:8443", "https://api.example.com/", false},
		{"api.example.com:443", "https://api.example.com/", true},
		{"api.example.com:80", "http://api.example.com/", true},
		{"*.example.com", "http://a.example.com/", true},
		{"*.example.com", "http://a.b.example.com:9/", true},
		{"*.example.com", "http://example.com/", false},
		{"*.example.com", "http://badexample.com/", false},
		{"*.example.com", "http://example.com.evil.test/", false},
		{"*.example.com:443", "https://a.example.com/", true},
		{"*.example.com:443", "http://a.example.com/", false},
		{"*.0.1", "http://127.0.0.1/", false},
		{"127.0.0.1", "http://127.0.0.1:5555/", true},
		{"127.0.0.1:5555", "http://127.0.0.1:5556/", false},
		{"[::1]", "http://[::1]:8080/", true},
		{"[::1]:8080", "http://[::1]:8080/", true},
		{"[::1]:8080", "http://[::1]:8081/", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostAllowed([]string{tt.pattern}, u); got != tt.want {
			t.Errorf("hostAllowed(%q, %s) = %v, want %v", tt.pattern, tt.url, got, tt.want)
		}
	}
	if hostAllowed(nil, &url.URL{Scheme: "http", Host: "a.test"}) {
		t.Error("an empty allowlist allows")
	}
}
