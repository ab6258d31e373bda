package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

var httpMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}

// errHostNotAllowed is returned by the redirect check.
var errHostNotAllowed = errors.New("host not on the function's allowlist")

// defaultHTTPClient re-checks the allowlist on every redirect.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if c := callFrom(req.Context()); c != nil && !hostAllowed(c.allowed, req.URL) {
				return fmt.Errorf("redirect to %s: %w", req.URL.Host, errHostNotAllowed)
			}
			return nil
		},
	}
}

// hostAllowed matches u against the allowlist. An entry is "*" (any
// host), a host name or IP address ("[::1]" for IPv6) on any port,
// "host:port" (that port only; a URL without a port has its scheme's), or
// "*.example.com": any name under example.com, not example.com itself and
// never an IP address, optionally with ":port".
func hostAllowed(allowed []string, u *url.URL) bool {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	isIP := net.ParseIP(host) != nil
	for _, a := range allowed {
		a = strings.ToLower(a)
		if a == "*" {
			return true
		}
		pattern, pport := a, ""
		if h, p, err := net.SplitHostPort(a); err == nil {
			pattern, pport = h, p
		} else {
			pattern = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
		}
		if pport != "" && pport != port {
			continue
		}
		if domain, ok := strings.CutPrefix(pattern, "*."); ok {
			if !isIP && strings.HasSuffix(host, "."+domain) {
				return true
			}
			continue
		}
		if pattern == host {
			return true
		}
	}
	return false
}

// hostHTTPRequest implements fl_imps.__http_request:
//
//	(resp_ptr, resp_len_ptr, status_ptr, method, uri_ptr, uri_len, hdr_ptr, hdr_len, body_ptr, body_len)
//
// The u32 at resp_len_ptr is read first as the capacity of the guest's
// response buffer; 0 means the guest did not say (FunLess's own guests), and
// then the body may fill linear memory up to its end. Wisp never writes past
// the capacity, the end of memory, or Limits.HTTPResponseBytes. The host then
// writes the status (u16 LE) at status_ptr, the body length (u32 LE, bytes)
// at resp_len_ptr and the body at resp_ptr. A refused or failed request is
// status 0 and length 0, with a log line saying why.
func hostHTTPRequest(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		(*call)(nil).hostTrap("__http_request called outside an invocation")
	}
	mem := mod.Memory()
	respPtr, respLenPtr, statusPtr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	method := api.DecodeU32(stack[3])
	uri := readGuest(c, mem, "uri", stack[4], stack[5])
	hdrs := readGuest(c, mem, "headers", stack[6], stack[7])
	body := readGuest(c, mem, "body", stack[8], stack[9])

	capacity, ok := mem.ReadUint32Le(respLenPtr)
	if !ok {
		c.hostTrap("__http_request: response length pointer %#x is outside linear memory", respLenPtr)
	}
	if _, ok := mem.ReadUint16Le(statusPtr); !ok {
		c.hostTrap("__http_request: status pointer %#x is outside linear memory", statusPtr)
	}
	size := mem.Size()
	if respPtr > size {
		c.hostTrap("__http_request: response pointer %#x is outside linear memory", respPtr)
	}
	room := uint64(size - respPtr)
	if capacity != 0 {
		room = min(room, uint64(capacity))
	}
	room = min(room, uint64(c.limits.HTTPResponseBytes))

	fail := func(format string, args ...any) {
		c.platformLog("__http_request: " + fmt.Sprintf(format, args...))
		mem.WriteUint16Le(statusPtr, 0)
		mem.WriteUint32Le(respLenPtr, 0)
	}
	if method >= uint32(len(httpMethods)) {
		fail("unknown method %d (0 GET, 1 POST, 2 PUT, 3 DELETE)", method)
		return
	}
	u, err := url.Parse(string(uri))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail("invalid URL %q", uri)
		return
	}
	if !hostAllowed(c.allowed, u) {
		fail("request to %s refused: host not on the function's allowlist", u.Host)
		return
	}

	rctx, cancel := context.WithTimeout(ctx, c.limits.HTTPTimeout)
	defer cancel()
	var rbody io.Reader
	if len(body) > 0 {
		rbody = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, httpMethods[method], u.String(), rbody)
	if err != nil {
		fail("%v", err)
		return
	}
	for line := range strings.SplitSeq(string(hdrs), "\n") {
		k, v, found := strings.Cut(line, ":") // values may contain ':'
		if k = strings.TrimSpace(k); !found || k == "" {
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := c.client.Do(req)
	if err != nil {
		fail("%v", err)
		return
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, int64(room)+1))
	if err != nil {
		fail("reading the response: %v", err)
		return
	}
	if uint64(len(got)) > room {
		got = got[:room]
		c.platformLog(fmt.Sprintf("__http_request: response body truncated to %d bytes", room))
	}
	if !mem.Write(respPtr, got) {
		c.hostTrap("__http_request: %d bytes at %#x are outside linear memory", len(got), respPtr)
	}
	mem.WriteUint32Le(respLenPtr, uint32(len(got)))
	mem.WriteUint16Le(statusPtr, uint16(resp.StatusCode))
}

func readGuest(c *call, mem api.Memory, what string, ptr, n uint64) []byte {
	p, l := api.DecodeU32(ptr), api.DecodeU32(n)
	if l == 0 {
		return nil
	}
	b, ok := mem.Read(p, l)
	if !ok {
		c.hostTrap("__http_request: %s (%d bytes at %#x) is outside linear memory", what, l, p)
	}
	return bytes.Clone(b)
}
