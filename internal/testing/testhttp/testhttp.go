// Package testhttp sends, and builds the bodies of, the HTTP requests tests make to the project's
// servers (controller REST API, agent local API). Test support only.
package testhttp

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"
)

// Do sends one request and returns the status and the body. token, when
// not empty, goes as a bearer token; contentType, when not empty, as the
// Content-Type. A request that cannot be sent fails the test.
func Do(t testing.TB, method, url, token, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// Multipart builds a multipart/form-data body with fields and one file, the
// shape of a function upload, and returns it with its Content-Type.
func Multipart(fields map[string]string, fileField, fileName string, content []byte) (io.Reader, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile(fileField, fileName)
	fw.Write(content)
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// Raw writes raw to the TCP address addr and reads until the server closes
// the connection or stays quiet for quiet; it returns what came back and
// whether the server closed the connection. For requests no client library
// would send (request smuggling, broken headers, slow bodies).
func Raw(t testing.TB, addr, raw string, quiet time.Duration) (string, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		conn.SetReadDeadline(time.Now().Add(quiet))
		n, err := conn.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.String(), true
		}
		if err != nil { // quiet, or reset
			var ne net.Error
			return out.String(), !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// StatusLines counts the HTTP/1.1 status lines in a raw answer: the
// responses a server sent on one connection.
func StatusLines(raw string) int { return len(statusLine.FindAllString(raw, -1)) }

var statusLine = regexp.MustCompile(`HTTP/1\.1 \d{3} `)

// CheckFraming sends, on raw sockets to addr, what a request smuggler or a
// sloppy client sends — Content-Length with Transfer-Encoding (both
// orders), no Host, a NUL in a header, obs-fold — each followed by a
// pipelined GET of banner, and checks that the server answers 400 once
// and closes the connection, so the hidden request is never served. Then
// it checks that two clean pipelined GETs are both served. invokePath is
// a POST route and auth its Authorization header line (with CRLF). Both
// servers (controller REST, agent local API) must pass it.
func CheckFraming(t *testing.T, addr, invokePath, auth, banner string) {
	t.Helper()
	hidden := "GET " + banner + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"content-length and chunked", "POST " + invokePath + " HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden},
		{"chunked and content-length", "POST " + invokePath + " HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + hidden},
		{"no host", "GET " + banner + " HTTP/1.1\r\n\r\n" + hidden},
		{"NUL in a header", "GET " + banner + " HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n" + hidden},
		{"obs-fold", "GET " + banner + " HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + hidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, closed := Raw(t, addr, tc.raw, time.Second)
			if !bytes.HasPrefix([]byte(out), []byte("HTTP/1.1 400")) {
				first, _, _ := bytes.Cut([]byte(out), []byte("\r\n"))
				t.Errorf("answer %q, want 400", first)
			}
			if n := StatusLines(out); n != 1 {
				t.Errorf("%d responses, want 1 (the hidden request was served): %q", n, out)
			}
			if !closed {
				t.Error("the connection stays open")
			}
		})
	}
	out, _ := Raw(t, addr, hidden+hidden, time.Second)
	if n := bytes.Count([]byte(out), []byte("HTTP/1.1 200")); n != 2 {
		t.Errorf("two clean pipelined requests: %d answers of 200: %q", n, out)
	}
}
