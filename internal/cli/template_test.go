package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/fntemplate"
	"github.com/wispfn/wisp/internal/testing/testenv"
)

// toolchainPresent skips (or, under WISP_REQUIRE_SERVICES=1, fails) t when
// the language's compiler is not installed.
func toolchainPresent(t *testing.T, lang string) {
	t.Helper()
	switch lang {
	case "c":
		if _, err := exec.LookPath("clang"); err != nil {
			testenv.Missing(t, "clang (wasm32-wasi)", fntemplate.InstallC)
		}
	case "go":
		if _, err := exec.LookPath("go"); err != nil {
			testenv.Missing(t, "go", fntemplate.InstallGo)
		}
	case "rust":
		_, err1 := os.Stat("/usr/bin/rustc")
		_, err2 := exec.LookPath("rustc")
		if err1 != nil && err2 != nil {
			testenv.Missing(t, "rustc (wasm32-wasi)", fntemplate.InstallRust)
		}
	}
}

// TestTemplates makes each template with `wisp fn new`, builds it with
// `wisp fn build` and runs the module with the agent's runtime.
func TestTemplates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })

	for _, lang := range fntemplate.Languages {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			toolchainPresent(t, lang)
			name := "hello_" + lang
			dir := filepath.Join(t.TempDir(), name)
			e := homeEnv(t)
			if code, stdout, stderr := runCLI(t, e, "fn", "new", name, "-l", lang, "-d", dir); code != 0 {
				t.Fatalf("fn new: exit %d: %s", code, stderr)
			} else if !strings.Contains(stdout, "created "+lang+" function "+name) {
				t.Errorf("fn new printed %q", stdout)
			}
			code, stdout, stderr := runCLI(t, e, "fn", "build", dir)
			if code != 0 {
				if strings.Contains(stderr, "which is missing") {
					testenv.Missing(t, lang+" toolchain", stderr)
				}
				t.Fatalf("fn build: exit %d: %s", code, stderr)
			}
			wasm := filepath.Join(dir, name+".wasm")
			if !strings.Contains(stdout, "built "+wasm) {
				t.Errorf("fn build printed %q", stdout)
			}
			b, err := os.ReadFile(wasm)
			if err != nil {
				t.Fatal(err)
			}
			info, err := rt.Load(ctx, b)
			if err != nil {
				t.Fatalf("loading %s: %v", wasm, err)
			}
			if info.ABI != runtime.ABIFunLess {
				t.Errorf("ABI %v, want the FunLess ABI", info.ABI)
			}
			for input, want := range map[string]string{
				`{"name":"Ada"}`: `{"payload":"Hello Ada!"}`,
				`{}`:             `{"payload":"Hello World!"}`,
			} {
				res, err := rt.Invoke(ctx, info.Digest, runtime.Request{Input: []byte(input)})
				if err != nil {
					t.Fatalf("invoke %s: %v", input, err)
				}
				if string(res.Output) != want {
					t.Errorf("%s gives %s, want %s", input, res.Output, want)
				}
			}
			// A second new into the same directory is refused.
			if code, _, stderr := runCLI(t, e, "fn", "new", name, "-l", lang, "-d", dir); code != ExitError || !strings.Contains(stderr, "already exists and is not empty") {
				t.Errorf("fn new over a project: exit %d, %q", code, stderr)
			}
		})
	}
}

// TestBuildMissingToolchain: an absent compiler is named with its Debian packages.
func TestBuildMissingToolchain(t *testing.T) {
	tests := []struct {
		lang, envKey, want string
	}{
		{"c", "WISP_CLANG", "building a c function needs clang, which is missing: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"},
		{"rust", "WISP_RUSTC", "building a rust function needs rustc, which is missing: apt-get install rustc libstd-rust-dev-wasm32"},
		{"go", "WISP_GO", "building a go function needs the go command, which is missing: install Go >= 1.24"},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "f")
			e := homeEnv(t)
			if code, _, stderr := runCLI(t, e, "fn", "new", "f", "-l", tt.lang, "-d", dir); code != 0 {
				t.Fatal(stderr)
			}
			e[tt.envKey] = filepath.Join(t.TempDir(), "no-such-compiler")
			code, stdout, stderr := runCLI(t, e, "fn", "build", dir)
			if code != ExitError || stdout != "" || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want one line with %q", code, stderr, tt.want)
			}
		})
	}
}
