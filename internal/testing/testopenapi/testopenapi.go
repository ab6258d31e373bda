// Package testopenapi checks HTTP requests and responses against
// openapi/openapi.yaml, the REST contract that both the controller's API
// (controller/api) and the agent's local invoke API (agent/localapi) serve,
// and records which operations and statuses were seen. Test support only.
package testopenapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Checker validates requests and responses against the document.
type Checker struct {
	router routers.Router
	doc    *openapi3.T
	mu     sync.Mutex
	seen   map[string]bool // operationId + " " + status
}

var loadDoc = sync.OnceValues(func() (*openapi3.T, error) {
	_, file, _, _ := goruntime.Caller(0)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "openapi", "openapi.yaml"))
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(loader.Context)
})

// Load returns a Checker for a server at base (e.g. "http://127.0.0.1:4321").
func Load(t testing.TB, base string) *Checker {
	t.Helper()
	shared, err := loadDoc()
	if err != nil {
		t.Fatalf("openapi/openapi.yaml: %v", err)
	}
	doc := *shared // shallow copy: only Servers differs
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := gorillamux.NewRouter(&doc)
	if err != nil {
		t.Fatalf("openapi router: %v", err)
	}
	return &Checker{router: router, doc: &doc, seen: map[string]bool{}}
}

// Check validates the response resp (whose body is body) to hr (whose body
// is reqBody), and the request too when checkRequest is set (a request
// meant to break the document is not checked, nor required to be in it).
// Failures are reported with t.Errorf.
func (c *Checker) Check(t testing.TB, hr *http.Request, reqBody []byte, checkRequest bool, resp *http.Response, body []byte) {
	t.Helper()
	vr := hr.Clone(context.Background())
	vr.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := c.router.FindRoute(vr)
	if err != nil {
		if checkRequest {
			t.Errorf("%s %s: not in openapi.yaml: %v", hr.Method, hr.URL.Path, err)
		}
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route, Options: opts}
	if checkRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: the request breaks openapi.yaml: %v", hr.Method, hr.URL.Path, err)
		}
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
	rin.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
		t.Errorf("%s %s: the %d response breaks openapi.yaml: %v\nbody: %.500s", hr.Method, hr.URL.Path, resp.StatusCode, err, body)
	}
	c.mu.Lock()
	c.seen[route.Operation.OperationID+" "+fmt.Sprint(resp.StatusCode)] = true
	c.mu.Unlock()
}

// Seen reports whether a checked response to operationID had status.
func (c *Checker) Seen(operationID string, status int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[operationID+" "+fmt.Sprint(status)]
}

// Missing lists the operations of the document no checked request reached.
func (c *Checker) Missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, path := range c.doc.Paths.InMatchingOrder() {
		for _, op := range c.doc.Paths.Value(path).Operations() {
			hit := false
			for k := range c.seen {
				if strings.HasPrefix(k, op.OperationID+" ") {
					hit = true
				}
			}
			if !hit {
				out = append(out, op.OperationID)
			}
		}
	}
	return out
}
