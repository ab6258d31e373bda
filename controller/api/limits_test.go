package api

import (
	"os/exec"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/testing/testwasm"
)

// TestUploadLimit checks 413 at the default limit (16 MiB) and at a
// configured one, for code just over the limit and for a body far over it
// (refused by fiber before the handler), leaving the store unchanged.
func TestUploadLimit(t *testing.T) {
	t.Parallel()
	wat := fixture(t, "hello_wat.wasm")
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		e := start(t, openEmbedded(t))
		before := e.snapshot()
		big := padModule(t, wat, DefaultMaxUploadBytes+1)
		status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "big"}, codePart(big))
		wantError(t, status, body, 413, "limit")
		e.wantUnchanged(before)
		// Exactly at the limit is fine.
		ok := padModule(t, wat, DefaultMaxUploadBytes)
		status, body = e.upload("POST", "/v1/fn/_", part{name: "name", value: "at_limit"}, codePart(ok))
		wantData[nameItem](t, status, body, 201)
	})
	t.Run("configured", func(t *testing.T) {
		t.Parallel()
		e := start(t, openEmbedded(t), func(c *Config) { c.MaxUploadBytes = 64 << 10 })
		before := e.snapshot()
		status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "big"}, codePart(padModule(t, wat, 64<<10+1)))
		wantError(t, status, body, 413, "limit")
		e.wantUnchanged(before)
		// Over the whole body limit (code limit + 1 MiB of slack): fiber
		// answers from the headers, before any handler runs and without
		// reading the body, with the same envelope. A client that keeps
		// writing may see the connection reset, so announce the body and
		// read the answer without sending it.
		for _, path := range []string{"/v1/fn/_", "/v1/fn"} {
			status, body = e.headersOnly("POST", path, "multipart/form-data; boundary=x", 2<<20)
			wantError(t, status, body, 413, "too large")
			e.wantUnchanged(before)
		}
		status, body = e.upload("POST", "/v1/fn/_", part{name: "name", value: "small"}, codePart(padModule(t, wat, 64<<10)))
		wantData[nameItem](t, status, body, 201)
	})
}

// TestUploadBusy: when the validating compile worker is starved of CPU
// (here a stand-in that sleeps), the upload is refused with 503, saying
// the controller is busy, not that the module is bad; nothing is stored.
func TestUploadBusy(t *testing.T) {
	t.Parallel()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	var code []byte
	for _, h := range testwasm.HostileModules() {
		if h.Name == "validate_adds" { // over what the interpreter compiles in process
			code = h.Code
		}
	}
	if code == nil {
		t.Fatal("no validate_adds in testwasm")
	}
	inspector := runtime.NewInspector(runtime.InspectConfig{Compile: runtime.CompileBudget{Worker: []string{sleep, "30"}, Timeout: 100 * time.Millisecond}})
	e := start(t, openEmbedded(t), func(c *Config) { c.Inspector = inspector })
	before := e.snapshot()
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "starved"}, codePart(code))
	if goruntime.GOOS == "linux" {
		wantError(t, status, body, 503, "too busy")
	} else { // the budget is wall time there: the verdict is the module's
		wantError(t, status, body, 400, "budget")
	}
	e.wantUnchanged(before)
}
