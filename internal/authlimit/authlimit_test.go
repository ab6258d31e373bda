package authlimit

import (
	"fmt"
	"testing"
	"time"
)

func fixedClock(l *Limiter) *time.Time {
	t := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return t }
	return &t
}

func TestBurstThenRefill(t *testing.T) {
	l := New(Config{Burst: 3, Refill: 2 * time.Second})
	now := fixedClock(l)
	for i := range 3 {
		if ok, _ := l.Allow("192.0.2.1"); !ok {
			t.Fatalf("attempt %d refused within the burst", i)
		}
		l.Fail("192.0.2.1")
	}
	ok, wait := l.Allow("192.0.2.1")
	if ok || wait != 2*time.Second {
		t.Fatalf("after the burst: allowed=%v wait=%v, want refused for 2s", ok, wait)
	}
	if ok, _ := l.Allow("192.0.2.2"); !ok {
		t.Fatal("another address is refused")
	}
	*now = now.Add(time.Second)
	if ok, wait := l.Allow("192.0.2.1"); ok || wait != time.Second {
		t.Fatalf("half refilled: allowed=%v wait=%v, want refused for 1s", ok, wait)
	}
	*now = now.Add(time.Second)
	if ok, _ := l.Allow("192.0.2.1"); !ok {
		t.Fatal("refused after one refill")
	}
	l.Fail("192.0.2.1")
	if ok, _ := l.Allow("192.0.2.1"); ok {
		t.Fatal("one refill bought more than one failure")
	}
}

func TestClientKeys(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1:4000"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"[2001:db8:1:2::1]:80", "2001:db8:1:2::2"},
		{"fe80::1%eth0", "fe80::2"},
	} {
		if Client(tc.a) != Client(tc.b) {
			t.Errorf("%s and %s count apart (%v, %v)", tc.a, tc.b, Client(tc.a), Client(tc.b))
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.2"},
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
	} {
		if Client(tc.a) == Client(tc.b) {
			t.Errorf("%s and %s count together", tc.a, tc.b)
		}
	}
}

// TestBounded: a flood of addresses keeps at most Clients buckets, the
// most recent ones.
func TestBounded(t *testing.T) {
	l := New(Config{Burst: 1, Clients: 100})
	fixedClock(l)
	for i := range 10_000 {
		l.Fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := len(l.buckets.Keys()); n != 100 {
		t.Fatalf("%d buckets kept, want 100", n)
	}
	if ok, _ := l.Allow("10.0.39.15"); ok { // the last one, 9999
		t.Fatal("the most recent client was forgotten")
	}
	if ok, _ := l.Allow("10.0.0.0"); !ok {
		t.Fatal("the oldest client is still refused after its eviction")
	}
}

func TestNil(t *testing.T) {
	var l *Limiter
	l.Fail("192.0.2.1")
	if ok, _ := l.Allow("192.0.2.1"); !ok {
		t.Fatal("a nil limiter refused")
	}
}
