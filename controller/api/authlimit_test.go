package api

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestAuthLimit: 1,000 wrong tokens from one address are mostly refused
// with 429 and Retry-After, before any lookup; meanwhile another address
// is served with its right token and still gets 401 (not 429) for a
// wrong one; the limited address gets in again once its bucket refills.
func TestAuthLimit(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t), func(c *Config) { c.AuthLimit.Refill = 500 * time.Millisecond })
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 8,
			DialContext:         func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) },
		}}
	}
	get := func(c *http.Client, token string) (int, string) {
		req, _ := http.NewRequest("GET", e.base+"/v1/fn", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	attacker, other := from("127.0.0.1"), from("127.0.0.2")
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 125 {
				status, retry := get(attacker, "wrong-"+string(rune('a'+w))+string(rune('a'+i%26)))
				if status == 429 && retry == "" {
					t.Error("429 without Retry-After")
				}
				mu.Lock()
				counts[status]++
				mu.Unlock()
			}
		})
	}
	// Another address is served meanwhile.
	for range 5 {
		if status, _ := get(other, e.admin); status != 200 {
			t.Errorf("another address with the right token: %d, want 200", status)
		}
	}
	if status, _ := get(other, "wrong"); status != 401 {
		t.Errorf("another address with a wrong token: %d, want 401", status)
	}
	wg.Wait()
	if counts[429] < 900 || counts[401]+counts[429] != 1000 {
		t.Fatalf("answers to 1,000 wrong tokens: %v, want at least 900 × 429 and the rest 401", counts)
	}
	// The spec knows 429.
	status, body := e.do(req{method: "GET", path: "/v1/fn", token: "Bearer wrong"})
	if status != 429 {
		t.Fatalf("right after the flood: %d %s, want 429", status, body)
	}
	// The bucket refills: one failure's worth after Refill.
	time.Sleep(600 * time.Millisecond)
	if status, _ := get(attacker, e.admin); status != 200 {
		t.Fatalf("after a refill, the right token: %d, want 200", status)
	}
	t.Logf("answers: %v", counts)
}
