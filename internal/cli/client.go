package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"syscall"

	"github.com/wispfn/wisp/internal/failover"
	"github.com/wispfn/wisp/internal/keypin"
)

// client talks to the controller's REST API: to one of the cluster's
// controllers, through a failover.Transport that moves a request to the
// next controller only when it provably did not reach the first one's
// handler (internal/failover).
type client struct {
	// hosts are the controllers' base URLs, e.g. http://127.0.0.1:4000;
	// requests are addressed to hosts[0] and the transport sends each to
	// the controller it picks.
	hosts []string
	// host is the controller messages name: the one that answered last,
	// else the first.
	host    string
	token   string
	http    *http.Client
	pinFrom string // where the pinned TLS fingerprint came from; "" when none
}

// request is one REST call.
type request struct {
	method      string
	path        string // escaped path below the host, e.g. /v1/fn/_
	query       url.Values
	body        []byte // nil: none
	contentType string
	// wrap, when not nil, wraps the body's reader of each attempt (the
	// upload progress bar).
	wrap func(io.Reader) io.Reader
	// header, when not nil, receives the answer's header (also of a failure).
	header *http.Header
}

// newRequest is an HTTP request for path (with its query) whose body can
// be sent again to another controller (GetBody).
func (c *client) newRequest(ctx context.Context, method, path string, query url.Values, body []byte, wrap func(io.Reader) io.Reader) (*http.Request, error) {
	u := c.hosts[0] + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("bad controller address %q: %v", c.hosts[0], err)
	}
	if body != nil {
		open := func() (io.ReadCloser, error) {
			var r io.Reader = bytes.NewReader(body)
			if wrap != nil {
				r = wrap(r)
			}
			return io.NopCloser(r), nil
		}
		hr.Body, _ = open()
		hr.GetBody = open
		hr.ContentLength = int64(len(body))
	}
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	return hr, nil
}

// send sends hr and remembers which controller answered.
func (c *client) send(hr *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, c.transportError(err)
	}
	if h := failover.Host(resp); h != "" {
		c.host = h
	}
	return resp, nil
}

// do sends req and returns the raw `data` value of a 2xx answer (nil for
// 204). Every failure is an error whose text is one readable line.
func (c *client) do(ctx context.Context, req request) (json.RawMessage, int, error) {
	hr, err := c.newRequest(ctx, req.method, req.path, req.query, req.body, req.wrap)
	if err != nil {
		return nil, 0, err
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	hr.Header.Set("Accept", "application/json")
	resp, err := c.send(hr)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if req.header != nil {
		*req.header = resp.Header
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("reading the controller's answer from %s: %v", c.host, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if resp.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(body)) == 0 {
			return nil, resp.StatusCode, nil
		}
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			return nil, resp.StatusCode, fmt.Errorf("the controller at %s answered %d with something that is not JSON: %.80q", c.host, resp.StatusCode, body)
		}
		return env.Data, resp.StatusCode, nil
	}
	return nil, resp.StatusCode, c.statusError(resp.StatusCode, body)
}

// getJSON is do for a GET whose data decodes into v (when v is not nil).
func (c *client) call(ctx context.Context, req request, v any) (json.RawMessage, error) {
	data, _, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	if v != nil && data != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("unexpected answer from the controller at %s: %v", c.host, err)
		}
	}
	return data, nil
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// statusError turns a non-2xx answer into one line.
func (c *client) statusError(status int, body []byte) error {
	detail := errorDetail(body)
	switch status {
	case http.StatusUnauthorized:
		if c.token == "" {
			return &apiError{status, "no token set: the controller at " + c.host + " needs one; set it with 'wisp config set token <token>', WISP_TOKEN or --token"}
		}
		return &apiError{status, "the controller at " + c.host + " refused the token (it is wrong or expired" + suffix(detail) + "); set a valid one with 'wisp config set token <token>', WISP_TOKEN or --token"}
	case http.StatusForbidden:
		if detail == "" {
			detail = "forbidden"
		}
		return &apiError{status, detail + " (this needs the admin token)"}
	}
	if detail == "" {
		detail = fmt.Sprintf("the controller at %s answered %d %s", c.host, status, http.StatusText(status))
	}
	return &apiError{status, detail}
}

func suffix(detail string) string {
	if detail == "" {
		return ""
	}
	return ": " + detail
}

// apiError is an error answer of the controller.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// errorDetail reads {"errors":{"detail":"..."}} or the 422 field form
// {"errors":{"name":["..."]}} into one line; "" when the body is neither.
func errorDetail(body []byte) string {
	var env struct {
		Errors map[string]json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 {
		return ""
	}
	if raw, ok := env.Errors["detail"]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return oneLine(s)
		}
	}
	keys := make([]string, 0, len(env.Errors))
	for k := range env.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		var msgs []string
		if json.Unmarshal(env.Errors[k], &msgs) == nil {
			parts = append(parts, k+" "+strings.Join(msgs, ", "))
		} else {
			parts = append(parts, k+": "+string(env.Errors[k]))
		}
	}
	return oneLine(strings.Join(parts, "; "))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// transportError explains in one line a request that no controller
// answered: a refused certificate, a request that may have run on the
// controller whose connection broke, or the controllers that could not
// be reached and why.
func (c *client) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	var fe *failover.Error
	if !errors.As(err, &fe) || len(fe.Attempts) == 0 {
		if terr := c.tlsError(c.host, err); terr != nil {
			return terr
		}
		return reachError(c.host, err)
	}
	last := fe.Attempts[len(fe.Attempts)-1]
	if terr := c.tlsError(last.Host, last.Err); terr != nil {
		return terr
	}
	if fe.MayHaveRun {
		return fmt.Errorf("the connection to the controller at %s broke after the request was sent and before any answer (%s); "+
			"it may have been carried out there, so it was not sent to another controller: check before repeating it",
			last.Host, reachReason(last.Err))
	}
	if len(fe.Attempts) == 1 {
		return reachError(last.Host, last.Err)
	}
	parts := make([]string, len(fe.Attempts))
	for i, a := range fe.Attempts {
		parts[i] = a.Host + ": " + reachReason(a.Err)
	}
	return fmt.Errorf("cannot reach any of the controllers (%s)", strings.Join(parts, "; "))
}

// tlsError explains a refused certificate: a key that is not the pinned
// one, or a certificate no CA here vouches for (a self-signed controller
// not pinned yet). Other errors give nil.
func (c *client) tlsError(host string, err error) error {
	if errors.Is(err, keypin.ErrMismatch) {
		var ue *url.Error
		reason := err.Error()
		if errors.As(err, &ue) {
			reason = ue.Err.Error()
		}
		return fmt.Errorf("refusing the controller at %s: %s (pinned by %s); if its certificate's key was replaced on purpose, "+
			"pin the new one ('wisp-controller tls fingerprint' on the controller)", host, oneLine(reason), c.pinFrom)
	}
	var presented *x509.Certificate
	var ua x509.UnknownAuthorityError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ua) && ua.Cert != nil:
		presented = ua.Cert
	case errors.As(err, &cv) && len(cv.UnverifiedCertificates) > 0:
		presented = cv.UnverifiedCertificates[0]
	default:
		return nil
	}
	return fmt.Errorf("the controller at %s presented a certificate this machine does not trust (its key fingerprint is %s); "+
		"if 'wisp-controller tls fingerprint' on the controller prints the same, pin it: wisp config set tls-fingerprint %s",
		host, keypin.Of(presented), keypin.Of(presented))
}

// reachError explains a transport failure in one line naming the host.
func reachError(host string, err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	return fmt.Errorf("cannot reach the controller at %s: %s", host, reachReason(err))
}

// reachReason is the plainest known words for a transport failure.
func reachReason(err error) string {
	reason := err.Error()
	var errno syscall.Errno
	var dns *net.DNSError
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &errno):
		reason = errno.Error()
	case errors.As(err, &dns):
		reason = dns.Error()
	case errors.As(err, &ne) && ne.Timeout():
		reason = "timed out"
	case errors.As(err, &ue):
		reason = ue.Err.Error()
	}
	return oneLine(reason)
}
