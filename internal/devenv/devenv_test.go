package devenv

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testhttp"
)

// TestDevPlatform runs the whole platform in-process on free ports, uploads
// the C hello function, and invokes it through the controller and through
// the agent's local API.
func TestDevPlatform(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	info := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", QUICListen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", LocalAPI: freeAddr(t)}, nil, func(i Info) { info <- i })
	}()
	var in Info
	select {
	case in = <-info:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatal("dev platform did not come up")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	code, _ := os.ReadFile("../../testdata/wasm/hello_c.wasm")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("name", "hello")
	mw.WriteField("wait_for_workers", "true")
	fw, _ := mw.CreateFormFile("code", "hello.wasm")
	fw.Write(code)
	mw.Close()
	if status, body := call(t, "POST", in.URL+"/v1/fn/_", in.AdminToken, mw.FormDataContentType(), &buf); status != 201 {
		t.Fatalf("upload: %d %s", status, body)
	}
	if status, body := call(t, "POST", in.URL+"/v1/fn/_/hello", in.AdminToken, "application/json", strings.NewReader(`{"args":{"name":"Ada"}}`)); status != 200 || body != `{"data":{"payload":"Hello Ada!"}}` {
		t.Fatalf("invoke: %d %s", status, body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, body := call(t, "POST", in.LocalAPI+"/v1/fn/_/hello", in.LocalToken, "application/json", strings.NewReader(`{"args":{"name":"Edge"}}`))
		if status == 200 && strings.Contains(body, "Hello Edge!") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("local API: %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func call(t *testing.T, method, url, token, ct string, body io.Reader) (int, string) {
	t.Helper()
	code, b := testhttp.Do(t, method, url, token, ct, body)
	return code, strings.TrimSpace(string(b))
}

func freeAddr(t *testing.T) string {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
