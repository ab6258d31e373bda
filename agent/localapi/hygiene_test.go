package localapi

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// TestHTTPHygiene: smuggling and broken headers on raw sockets are refused
// with 400 and a closed connection (testhttp.CheckFraming, the same cases
// as the controller's).
func TestHTTPHygiene(t *testing.T) {
	e := start(t)
	testhttp.CheckFraming(t, strings.TrimPrefix(e.url, "http://"), "/v1/fn/_/hello_c", "Authorization: Bearer "+e.token+"\r\n", "/v1/")
}

// TestStrictJSON: exactly one JSON value, as on the controller.
func TestStrictJSON(t *testing.T) {
	e := start(t)
	for _, body := range []string{`{"args":{}}]]}}`, `{"args":{}} {}`, `{"args":{}}x`} {
		status, out := e.postTo(t, e.url, "/v1/fn/_/hello_c", e.token, body, false)
		if status != 400 || !strings.Contains(out, "after the JSON") {
			t.Errorf("%s: %d %s, want 400 naming the data after the JSON value", body, status, out)
		}
	}
	if status, out := e.post(t, "/v1/fn/_/hello_c", e.token, "{\"args\":{\"name\":\"Ada\"}} \n\t"); status != 200 {
		t.Errorf("trailing white space: %d %s", status, out)
	}
}

// TestSlowBodyCutOff: a client that sends its body a byte at a time, with
// a wrong token or a right one, is cut off within the read timeout.
func TestSlowBodyCutOff(t *testing.T) {
	e := start(t)
	url := e.serve(t, Config{Token: e.token, ReadTimeout: 500 * time.Millisecond})
	addr := strings.TrimPrefix(url, "http://")
	for _, tc := range []struct{ name, token string }{{"a wrong token", "wrong"}, {"the right token", e.token}} {
		token := tc.token
		conn := dialSlow(t, addr, "POST /v1/fn/_/hello_c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
		start := time.Now()
		for time.Since(start) < 10*time.Second {
			if _, err := conn.Write([]byte(" ")); err != nil {
				break // cut off
			}
			time.Sleep(200 * time.Millisecond)
		}
		took := time.Since(start)
		conn.Close()
		if took >= 10*time.Second {
			t.Fatalf("%s: a byte every 200ms held the connection for %v", tc.name, took)
		}
		t.Logf("%s: cut off after %v", tc.name, took.Round(time.Millisecond))
	}
}

// dialSlow connects to addr and sends head (request line and headers).
func dialSlow(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	return conn
}
