// Package testwait waits, in tests, for work that happens in the background
// (a push, a delivery, a reconnect, a metric) instead of sleeping a fixed
// time. It is test support only; production code must not import it.
package testwait

import (
	"testing"
	"time"
)

// interval is how often a condition is checked.
const interval = 10 * time.Millisecond

// Until calls f until it returns nil. If d passes first, it fails the test
// with f's last error.
func Until(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", d, err)
		}
		time.Sleep(interval)
	}
}

// For calls cond until it returns true. If d passes first, it fails the
// test saying what it waited for.
func For(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(interval)
	}
}
