package main

import (
	"os"
	"testing"

	"github.com/wispfn/wisp/agent/runtime"
)

// TestMain lets run's compile worker (this test binary) serve.
func TestMain(m *testing.M) {
	runtime.RunCompileWorkerIfAsked()
	os.Exit(m.Run())
}
