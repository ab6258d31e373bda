// Package testenv decides what a test does when a service it needs (Postgres,
// an MQTT broker, a CouchDB-compatible server, a toolchain) is not there.
//
// On a laptop such a test is skipped with a message naming the service and how
// to start it. When WISP_REQUIRE_SERVICES=1 (CI sets it through .ci/run) the
// same condition fails the test instead, so nothing silently stops being
// tested. It also names things on those shared services (topics, client ids)
// so that test runs do not collide. It is test support only; production code
// must not import it.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
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

// MosquittoAddr is where the tests' MQTT broker listens (make services).
const MosquittoAddr = "127.0.0.1:1883"

// Mosquitto checks that the MQTT broker is up and returns its address.
func Mosquitto(t testing.TB) string {
	t.Helper()
	TCP(t, "Mosquitto", MosquittoAddr, "run make services")
	return MosquittoAddr
}

// Unique returns 12 random hex digits, to make a topic or client id that no
// other test run uses.
func Unique() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Env returns the value of the environment variable key, or def when it is empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
