package api

import (
	"strings"
	"testing"

	"github.com/wispfn/wisp/internal/testing/testhttp"
)

// TestHTTPHygiene: smuggling and broken headers on raw sockets are refused
// with 400 and a closed connection (testhttp.CheckFraming, the same cases
// as the agent's local API).
func TestHTTPHygiene(t *testing.T) {
	t.Parallel()
	e := start(t, openEmbedded(t))
	testhttp.CheckFraming(t, strings.TrimPrefix(e.base, "http://"), "/v1/fn/_/nofn", "Authorization: Bearer "+e.admin+"\r\n", "/v1")
}
