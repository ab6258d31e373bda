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

	"github.com/wispfn/wisp/internal/keypin"
)

// client talks to the controller's REST API.
type client struct {
	host    string // base URL, e.g. http://127.0.0.1:4000
	token   string
	http    *http.Client
	pinFrom string // where the pinned TLS fingerprint came from; "" when none
}

// request is one REST call.
type request struct {
	method      string
	path        string // escaped path below the host, e.g. /v1/fn/_
	query       url.Values
	body        io.Reader
	length      int64 // of body, when known (-1 otherwise)
	contentType string
	// header, when not nil, receives the answer's header (also of a failure).
	header *http.Header
}

// do sends req and returns the raw `data` value of a 2xx answer (nil for
// 204). Every failure is an error whose text is one readable line.
func (c *client) do(ctx context.Context, req request) (json.RawMessage, int, error) {
	u := c.host + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, req.body)
	if err != nil {
		return nil, 0, fmt.Errorf("bad controller address %q: %v", c.host, err)
	}
	if req.body != nil && req.length >= 0 {
		hr.ContentLength = req.length
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	hr.Header.Set("Accept", "application/json")
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if terr := c.tlsError(err); terr != nil {
			return nil, 0, terr
		}
		return nil, 0, reachError(c.host, err)
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

func jsonBody(v any) (io.Reader, int64) {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b), int64(len(b))
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

// reachError explains a transport failure in one line naming the host.
// tlsError explains a refused certificate: a key that is not the pinned
// one, or a certificate no CA here vouches for (a self-signed controller
// not pinned yet). Other errors give nil.
func (c *client) tlsError(err error) error {
	if errors.Is(err, keypin.ErrMismatch) {
		var ue *url.Error
		reason := err.Error()
		if errors.As(err, &ue) {
			reason = ue.Err.Error()
		}
		return fmt.Errorf("refusing the controller at %s: %s (pinned by %s); if its certificate's key was replaced on purpose, "+
			"pin the new one ('wisp-controller tls fingerprint' on the controller)", c.host, oneLine(reason), c.pinFrom)
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
		c.host, keypin.Of(presented), keypin.Of(presented))
}

func reachError(host string, err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
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
	return fmt.Errorf("cannot reach the controller at %s: %s", host, oneLine(reason))
}
