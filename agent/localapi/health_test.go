package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testopenapi"
)

func get(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHealthAndStatus: /healthz and /readyz need no token and answer as
// openapi.yaml says, with Config.Ready's reason; GET /v1/status needs the
// local token and answers the Config.Status report.
func TestHealthAndStatus(t *testing.T) {
	e := start(t)
	var reason atomic.Value
	reason.Store("")
	var fail atomic.Bool
	url := e.serve(t, Config{Token: e.token,
		Ready: func(context.Context) string { return reason.Load().(string) },
		Status: func(context.Context) (status.Report, error) {
			if fail.Load() {
				return status.Report{}, errors.New("secret detail")
			}
			return status.Report{From: status.FromAPI, AgentID: "ag_1", Outbox: status.Outbox{Count: 2},
				Recent: []status.Activation{{ID: "a1", Module: "_", Function: "f", Status: "ok", Started: time.Unix(1, 0).UTC()}}}, nil
		}})
	spec := testopenapi.Load(t, url)
	for _, tc := range []struct {
		path, reason string
		status       int
		body         string
	}{
		{"/healthz", "", 200, "ok\n"},
		{"/readyz", "", 200, "ok\n"},
		{"/readyz", health.ReasonNoControllerLink, 503, "not ready: no controller link\n"},
		{"/healthz", health.ReasonNoControllerLink, 200, "ok\n"},
	} {
		reason.Store(tc.reason)
		resp, body := get(t, url+tc.path, "")
		if resp.StatusCode != tc.status || body != tc.body {
			t.Errorf("GET %s (%q) = %d %q, want %d %q", tc.path, tc.reason, resp.StatusCode, body, tc.status, tc.body)
		}
		for k := range resp.Header {
			if k != "Content-Type" && k != "Content-Length" && k != "Cache-Control" && k != "Date" {
				t.Errorf("GET %s: header %s (the probes carry no other)", tc.path, k)
			}
		}
		req, _ := http.NewRequest("GET", url+tc.path, nil)
		spec.Check(t, req, nil, true, resp, []byte(body))
	}
	if !spec.Seen("healthz", 200) || !spec.Seen("readyz", 503) {
		t.Error("the probes were not checked against openapi.yaml")
	}

	for _, tok := range []string{"", "wrong"} {
		if resp, body := get(t, url+"/v1/status", tok); resp.StatusCode != 401 || strings.Contains(body, "ag_1") {
			t.Errorf("GET /v1/status with token %q = %d %s, want 401", tok, resp.StatusCode, body)
		}
	}
	resp, body := get(t, url+"/v1/status", e.token)
	var got struct{ Data status.Report }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("GET /v1/status = %d %s", resp.StatusCode, body)
	}
	if got.Data.AgentID != "ag_1" || got.Data.Outbox.Count != 2 || len(got.Data.Recent) != 1 || got.Data.Recent[0].ID != "a1" {
		t.Errorf("status report = %+v", got.Data)
	}
	fail.Store(true)
	if resp, body := get(t, url+"/v1/status", e.token); resp.StatusCode != 500 || strings.Contains(body, "secret detail") {
		t.Errorf("a failing status report = %d %s, want 500 without the error's text", resp.StatusCode, body)
	}
}

// TestHealthHygiene: the probes go through the same framing checks as
// every route.
func TestHealthHygiene(t *testing.T) {
	e := start(t)
	testhttp.CheckFraming(t, strings.TrimPrefix(e.url, "http://"), "/v1/fn/_/hello_c", "Authorization: Bearer "+e.token+"\r\n", "/readyz")
}
