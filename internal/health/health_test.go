package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestCachedStorm: a storm of probes makes one check per TTL, and the
// verdict follows the check once the TTL has passed. (Real time: the
// probes wait for the check on a mutex, which synctest does not count as
// blocked.)
func TestCachedStorm(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var failing atomic.Bool
	const ttl = 2 * time.Second
	c := NewCached(CachedConfig{Reason: ReasonStoreUnreachable, TTL: ttl, Check: func(ctx context.Context) error {
		calls.Add(1)
		time.Sleep(10 * time.Millisecond) // a ping takes a while: the storm waits for it
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	}})
	storm := func() map[string]int {
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for range 500 {
			wg.Go(func() {
				r := c.Reason(context.Background())
				mu.Lock()
				got[r]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	if got := storm(); got[""] != 500 || calls.Load() != 1 {
		t.Fatalf("first storm: %v answers, %d checks; want 500 ok, 1 check", got, calls.Load())
	}
	failing.Store(true)
	if got := storm(); got[""] != 500 || calls.Load() != 1 {
		t.Fatalf("within the TTL: %v answers, %d checks; want the cached ok", got, calls.Load())
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if got := storm(); got[ReasonStoreUnreachable] != 500 || calls.Load() != 2 {
		t.Fatalf("after the TTL: %v answers, %d checks; want 500 %q, 2 checks", got, calls.Load(), ReasonStoreUnreachable)
	}
}

// TestCachedTimeout: a check that hangs is cut at the timeout and counts
// as not ready; a probe that gives up first does not decide for the rest.
func TestCachedTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCached(CachedConfig{Reason: ReasonStoreUnreachable, Timeout: 2 * time.Second, Check: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the probe's own context is already done
		start := time.Now()
		if r := c.Reason(ctx); r != ReasonStoreUnreachable {
			t.Fatalf("a hanging check: %q", r)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("the check was cut after %v, want the 2s timeout", d)
		}
	})
}

// nopWriter is a ResponseWriter that keeps nothing, to count what the
// handlers themselves allocate.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// WriteString: net/http's ResponseWriter has it too, so io.WriteString
// copies nothing.
func (w *nopWriter) WriteString(s string) (int, error) { return len(s), nil }

// TestHandlersAnswerAndAllocate: the answers are ok or "not ready:
// <reason>", with two headers, and writing them allocates nothing.
func TestHandlersAnswerAndAllocate(t *testing.T) {
	var reason atomic.Value
	reason.Store("")
	mux := http.NewServeMux()
	Register(mux, func(context.Context) string { return reason.Load().(string) })
	for _, tc := range []struct{ path, reason, body string }{
		{LivePath, "", "ok\n"}, {ReadyPath, "", "ok\n"},
		{ReadyPath, ReasonStopping, "not ready: stopping\n"}, {LivePath, ReasonStopping, "ok\n"},
	} {
		reason.Store(tc.reason)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Body.String() != tc.body || (tc.body == "ok\n") != (rec.Code == 200) || len(rec.Header()) != 2 {
			t.Errorf("GET %s (%q) = %d %q %v", tc.path, tc.reason, rec.Code, rec.Body, rec.Header())
		}
	}
	w := &nopWriter{h: http.Header{}}
	h, _ := mux.Handler(httptest.NewRequest("GET", ReadyPath, nil))
	req := httptest.NewRequest("GET", ReadyPath, nil)
	for _, r := range []string{"", ReasonNoControllerLink} {
		reason.Store(r)
		if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n != 0 {
			t.Errorf("answering %q: %.1f allocations, want 0", r, n)
		}
	}
}

func TestLocalURL(t *testing.T) {
	for in, want := range map[string]string{
		":9464": "http://127.0.0.1:9464/readyz", "0.0.0.0:4080": "http://127.0.0.1:4080/readyz",
		"[::]:1": "http://[::1]:1/readyz", "10.0.0.2:80": "http://10.0.0.2:80/readyz",
	} {
		if got, err := LocalURL("http", in, ReadyPath); err != nil || got != want {
			t.Errorf("LocalURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := LocalURL("http", "nonsense", ReadyPath); err == nil {
		t.Error("LocalURL took an address without a port")
	}
}
