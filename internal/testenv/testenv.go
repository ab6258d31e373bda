// Package testenv decides what a test does when a service it needs (Postgres,
// an MQTT broker, a CouchDB-compatible server, a toolchain) is not there.
//
// On a laptop such a test is skipped with a message naming the service and how
// to start it. When WISP_REQUIRE_SERVICES=1 (CI sets it through .ci/run) the
// same condition fails the test instead, so nothing silently stops being
// tested. It is test support only; production code must not import it.
package testenv

import (
	"net"
	"os"
	"testing"
	"time"
)

// Required reports whether missing services must fail tests instead of skipping them.
func Required() bool {
	return os.Getenv("WISP_REQUIRE_SERVICES") == "1"
}

// Missing skips t, or fails it when services are required, explaining which
// service is missing and how to provide it.
func Missing(t testing.TB, service, hint string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (WISP_REQUIRE_SERVICES=1) but unavailable: %s", service, hint)
	}
	t.Skipf("skipped: %s unavailable (%s); set WISP_REQUIRE_SERVICES=1 to make this a failure", service, hint)
}

// TCP checks that something listens on addr; if not, it calls Missing.
func TCP(t testing.TB, service, addr, hint string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		Missing(t, service, hint+": "+err.Error())
		return
	}
	c.Close()
}

// Env returns the value of the environment variable key, or def when it is empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
