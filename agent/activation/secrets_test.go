package activation

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/protocol"
)

// TestEdgePathsGetSecrets: both edge paths (Run for the local API,
// RunMessage for the local triggers) run a desired function with its
// env and secrets, and the outbox record holds neither value.
func TestEdgePathsGetSecrets(t *testing.T) {
	e := start(t, runtime.Config{})
	code, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "secret_echo.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	d := runtime.Digest(code)
	if err := e.st.PutCode(d, code); err != nil {
		t.Fatal(err)
	}
	const value = "edge-path-S3CRET"
	if err := e.st.SetDesired([]protocol.DesiredFunction{{Module: "_", Name: "secret_echo", Digest: d,
		Secrets: []protocol.Secret{{Name: "API_KEY", Value: []byte(value)}}}}); err != nil {
		t.Fatal(err)
	}
	h := fnv.New32a()
	h.Write([]byte(value))
	want := fmt.Sprintf(`{"set":true,"len":%d,"fnv1a":"%08x"}`, len(value), h.Sum32())
	r := e.runner(t, Config{Recorder: e.st})
	req := Request{Module: "_", Function: "secret_echo", Args: []byte(`{}`), Source: SourceLocalAPI}
	if res, err := r.Run(context.Background(), req); err != nil || string(res.Output) != want {
		t.Fatalf("Run: %s %v; want %s", res.Output, err, want)
	}
	req.Source = SourceLocalMQTT
	if res, err := r.RunMessage(context.Background(), req, MessageKey("_", "secret_echo", "t", req.Args), false); err != nil || string(res.Output) != want {
		t.Fatalf("RunMessage: %s %v; want %s", res.Output, err, want)
	}
	entries := e.outbox(t)
	if len(entries) != 2 {
		t.Fatalf("outbox: %d entries", len(entries))
	}
	for _, en := range entries {
		b := fmt.Sprintf("%+v", en)
		if strings.Contains(b, value) {
			t.Fatal("an outbox entry holds the secret's value")
		}
	}
}
