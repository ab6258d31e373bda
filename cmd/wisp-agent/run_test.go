package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestInvokeCommand(t *testing.T) {
	noenv := func(string) (string, bool) { return "", false }
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"hello C", []string{"invoke", "../../testdata/wasm/hello_c.wasm", `{"name":"Ada"}`}, "", 0, `{"payload":"Hello Ada!"}`, "funless-v1"},
		{"stdin input, interpreter", []string{"invoke", "-engine", "interpreter", "../../testdata/wasm/echo_c.wasm", "-"}, `{"x":1}`, 0, `{"x":1}`, "interpreter"},
		{"logs on stderr", []string{"invoke", "../../testdata/wasm/log.wasm"}, "", 0, `{"logged":2}`, "log: first line"},
		{"guest error", []string{"invoke", "../../testdata/wasm/guest_error.wasm"}, "", 1, "", "guest error: something went wrong"},
		{"not wasm", []string{"invoke", "../../testdata/wasm/notwasm.wasm"}, "", 1, "", "not wasm"},
		{"missing file", []string{"invoke", "nope.wasm"}, "", 1, "", "no such file"},
		{"timeout", []string{"invoke", "-timeout", "100ms", "../../testdata/wasm/loop.wasm"}, "", 1, "", "timeout"},
		{"bad engine", []string{"invoke", "-engine", "jit", "../../testdata/wasm/hello_c.wasm"}, "", 2, "", "engine"},
		{"no command runs the agent", nil, "", 2, "", "no controller address"},
		{"no file", []string{"invoke"}, "", 2, "", "accepts between 1 and 2 arg(s)"},
		{"unknown command", []string{"fly"}, "", 2, "", `unknown command "fly"`},
		{"stray argument", []string{"run", "--controllers", "x:1", "extra"}, "", 2, "", `unknown command "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, strings.NewReader(tt.stdin), &out, &errb, noenv)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, errb.String())
			}
			if strings.TrimSpace(out.String()) != tt.wantStdout {
				t.Errorf("stdout %q, want %q", out.String(), tt.wantStdout)
			}
			if !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tt.wantStderr)
			}
		})
	}
}
