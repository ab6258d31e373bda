package api

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/version"
)

// TestHealthProbes: /healthz and /readyz need no token, answer ok or 503
// with Config.Ready's reason, and say nothing else (no version, no
// configuration, in the body or the headers).
func TestHealthProbes(t *testing.T) {
	t.Parallel()
	var reason atomic.Value
	reason.Store("")
	e := start(t, openEmbedded(t), func(c *Config) {
		c.Ready = func(context.Context) string { return reason.Load().(string) }
	})
	check := func(path string, wantStatus int, wantBody string) {
		t.Helper()
		hr, err := http.NewRequest("GET", e.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		status, body := e.do(req{method: "GET", path: path, token: noToken})
		if status != wantStatus || string(body) != wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", path, status, body, wantStatus, wantBody)
		}
		for k, v := range resp.Header {
			switch k {
			case "Content-Type", "Content-Length", "Cache-Control", "Date":
			default:
				t.Errorf("GET %s: header %s: %v (the probes carry no other)", path, k, v)
			}
			if strings.Contains(strings.Join(v, " "), version.Version) && version.Version != "" {
				t.Errorf("GET %s: header %s shows the version", path, k)
			}
		}
	}
	check("/healthz", 200, "ok\n")
	check("/readyz", 200, "ok\n")
	reason.Store(health.ReasonStoreUnreachable)
	check("/readyz", 503, "not ready: store unreachable\n")
	check("/healthz", 200, "ok\n")
	// A token changes nothing, a bad one is not even looked at.
	if status, _ := e.do(req{method: "GET", path: "/healthz", token: "Bearer nope"}); status != 200 {
		t.Errorf("/healthz with a bad token = %d", status)
	}
	reason.Store("")
	check("/readyz", 200, "ok\n")
}

// TestHealthProbesHygiene: the probes go through the same framing checks
// as every route (testhttp.CheckFraming with /readyz as the GET).
func TestHealthProbesHygiene(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t))
	testhttp.CheckFraming(t, strings.TrimPrefix(e.base, "http://"), "/v1/fn/_/nofn", "Authorization: Bearer "+e.admin+"\r\n", "/readyz")
}

// TestHealthProbesAllocate: a probe costs no more allocations than the
// banner (the REST API's one other route without a token), however many
// arrive: what the request pipeline allocates, and nothing of its own.
func TestHealthProbesAllocate(t *testing.T) {
	s, err := New(Config{Store: openEmbedded(t), Log: testLogger(t),
		Ready: func(context.Context) string { return health.ReasonStoreUnreachable }})
	if err != nil {
		t.Fatal(err)
	}
	h := s.app.Handler()
	allocs := func(path string) float64 {
		var ctx fasthttp.RequestCtx
		return testing.AllocsPerRun(200, func() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod("GET")
			ctx.Request.SetRequestURI(path)
			ctx.Request.Header.SetHost("x")
			h(&ctx)
		})
	}
	banner := allocs("/v1")
	for _, p := range []string{"/healthz", "/readyz"} {
		if got := allocs(p); got > banner {
			t.Errorf("GET %s: %.1f allocations per request, the banner %.1f", p, got, banner)
		} else {
			t.Logf("GET %s: %.1f allocations per request (the banner: %.1f)", p, got, banner)
		}
	}
}
