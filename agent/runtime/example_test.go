package runtime_test

import (
	"context"
	"fmt"
	"os"

	"github.com/wispfn/wisp/agent/runtime"
)

// A function is loaded once per digest and invoked with JSON; each
// invocation gets a fresh instance.
func Example() {
	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{})
	if err != nil {
		panic(err)
	}
	defer rt.Close(ctx)

	code, err := os.ReadFile("../../testdata/wasm/hello_c.wasm")
	if err != nil {
		panic(err)
	}
	info, err := rt.Load(ctx, code)
	if err != nil {
		panic(err)
	}
	res, err := rt.Invoke(ctx, info.Digest, runtime.Request{Input: []byte(`{"name":"Ada"}`)})
	if err != nil {
		panic(err)
	}
	fmt.Println(info.ABI, string(res.Output))
	// Output: funless-v1 {"payload":"Hello Ada!"}
}

// Failures are typed: match a kind with errors.Is, read details with errors.As.
func Example_errors() {
	ctx := context.Background()
	rt, _ := runtime.New(ctx, runtime.Config{})
	defer rt.Close(ctx)
	code, _ := os.ReadFile("../../testdata/wasm/exit_c.wasm")
	info, _ := rt.Load(ctx, code)
	_, err := rt.Invoke(ctx, info.Digest, runtime.Request{})
	fmt.Println(runtime.KindOf(err), "-", err)
	// Output: exit - exit: exit code 3: boom: bad input
}
