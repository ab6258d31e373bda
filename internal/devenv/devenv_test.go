package devenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testhttp"
	"github.com/wispfn/wisp/internal/testing/testwait"
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
		// Shutdown waited for every goroutine the controller's server, API
		// and fleet started: none is left once Run returned.
		noGoroutinesOf(t, "controller/server.", "controller/api.", "controller/fleet.")
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

// noGoroutinesOf fails if a goroutine has a frame in one of the packages
// (module-relative prefixes such as "controller/fleet."). A goroutine that
// was waited for may still be returning from its last frames, so it looks
// for up to two seconds; one that was not waited for is blocked or busy
// and stays.
func noGoroutinesOf(t *testing.T, pkgs ...string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(2 * time.Second); ; {
		left = left[:0]
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, p := range pkgs {
				if strings.Contains(g, "github.com/wispfn/wisp/"+p) {
					left = append(left, g)
					break
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines of %v are left after shutdown:\n\n%s", len(left), pkgs, strings.Join(left, "\n\n"))
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
