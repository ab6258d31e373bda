package runtime

import (
	"context"
	"fmt"
	"hash/fnv"
	"testing"
)

// TestCommandEnv: a WASI command reads Request.Env (secret_echo answers
// API_KEY's length and hash); a call without it sees none.
func TestCommandEnv(t *testing.T) {
	r := newRuntime(t, Config{})
	d := load(t, r, "secret_echo")
	const value = "k=v s3cret"
	h := fnv.New32a()
	h.Write([]byte(value))
	res, err := r.Invoke(context.Background(), d, Request{Env: []string{"OTHER=x", "API_KEY=" + value}})
	want := fmt.Sprintf(`{"set":true,"len":%d,"fnv1a":"%08x"}`, len(value), h.Sum32())
	if err != nil || string(res.Output) != want {
		t.Fatalf("with env: %s %v; want %s", res.Output, err, want)
	}
	res, err = r.Invoke(context.Background(), d, Request{})
	if err != nil || string(res.Output) != `{"set":false,"len":0,"fnv1a":""}` {
		t.Fatalf("without env: %s %v", res.Output, err)
	}
}
