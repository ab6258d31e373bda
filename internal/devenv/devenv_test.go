package devenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testhttp"
	"github.com/wispfn/wisp/internal/testwait"
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
	form, ct := testhttp.Multipart(map[string]string{"name": "hello", "wait_for_workers": "true"}, "code", "hello.wasm", code)
	if status, body := call(t, "POST", in.URL+"/v1/fn/_", in.AdminToken, ct, form); status != 201 {
		t.Fatalf("upload: %d %s", status, body)
	}
	if status, body := call(t, "POST", in.URL+"/v1/fn/_/hello", in.AdminToken, "application/json", strings.NewReader(`{"args":{"name":"Ada"}}`)); status != 200 || body != `{"data":{"payload":"Hello Ada!"}}` {
		t.Fatalf("invoke: %d %s", status, body)
	}
	testwait.Until(t, 20*time.Second, func() error {
		status, body := call(t, "POST", in.LocalAPI+"/v1/fn/_/hello", in.LocalToken, "application/json", strings.NewReader(`{"args":{"name":"Edge"}}`))
		if status != 200 || !strings.Contains(body, "Hello Edge!") {
			return fmt.Errorf("local API: %d %s", status, body)
		}
		return nil
	})
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
