package fntemplate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Toolchain names the compilers; empty fields mean clang, go and
// /usr/bin/rustc (else rustc on PATH).
type Toolchain struct {
	Clang, Go, Rustc string
}

// Install hints, by what is missing.
const (
	InstallC    = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"
	InstallRust = "apt-get install rustc libstd-rust-dev-wasm32"
	InstallGo   = "install Go >= 1.24 from https://go.dev/dl/ (Debian's golang-go is too old for go:wasmexport)"
)

// MissingToolchainError says which toolchain is missing and how to get it.
type MissingToolchainError struct {
	Language string
	Tool     string // what is missing, e.g. "clang", "wasi-libc"
	Install  string // the install hint
	Err      error  // the underlying failure, if any
}

func (e *MissingToolchainError) Error() string {
	return fmt.Sprintf("building a %s function needs %s, which is missing: %s", e.Language, e.Tool, e.Install)
}

func (e *MissingToolchainError) Unwrap() error { return e.Err }

// ErrBuild is wrapped by compiler failures (the compiler's output went to log).
var ErrBuild = errors.New("build failed")

// Build compiles the project in dir into <dir>/<name>.wasm and returns that
// path. The compiler's output goes to log.
func Build(ctx context.Context, dir string, tc Toolchain, log io.Writer) (string, error) {
	p, err := Load(dir)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	out := filepath.Join(abs, p.Name+".wasm")
	var cmd *exec.Cmd
	switch p.Language {
	case "c":
		clang, err := look(tc.Clang, "clang")
		if err != nil {
			return "", &MissingToolchainError{"c", "clang", InstallC, err}
		}
		cmd = exec.CommandContext(ctx, clang, "--target=wasm32-wasi", "-mexec-model=reactor", "-O2",
			"-Wall", "-Wl,--strip-all", "-o", out, "main.c")
	case "go":
		goBin, err := look(tc.Go, "go")
		if err != nil {
			return "", &MissingToolchainError{"go", "the go command", InstallGo, err}
		}
		cmd = exec.CommandContext(ctx, goBin, "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false",
			"-ldflags=-s -w", "-o", out, ".")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	case "rust":
		def := "/usr/bin/rustc"
		if _, err := os.Stat(def); err != nil {
			def = "rustc"
		}
		rustc, err := look(tc.Rustc, def)
		if err != nil {
			return "", &MissingToolchainError{"rust", "rustc", InstallRust, err}
		}
		if err := checkRustStd(ctx, rustc); err != nil {
			return "", err
		}
		cmd = exec.CommandContext(ctx, rustc, "--edition", "2021", "--crate-type", "cdylib", "--target", "wasm32-wasi",
			"--crate-name", "wisp_function", "-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols",
			"-o", out, filepath.Join("src", "lib.rs"))
	}
	cmd.Dir = abs
	var captured bytes.Buffer
	cmd.Stdout = io.MultiWriter(log, &captured)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		if m := diagnose(p.Language, captured.String()); m != nil {
			m.Err = err
			return "", m
		}
		return "", fmt.Errorf("%w: %s %s: %v", ErrBuild, filepath.Base(cmd.Path), p.Language, err)
	}
	return out, nil
}

// look finds a command: an explicit path or name, else the default.
func look(explicit, def string) (string, error) {
	name := explicit
	if name == "" {
		name = def
	}
	return exec.LookPath(name)
}

// checkRustStd makes sure the wasm32-wasi standard library is installed:
// without it rustc fails with a message that does not name the package.
func checkRustStd(ctx context.Context, rustc string) error {
	out, err := exec.CommandContext(ctx, rustc, "--print", "target-libdir", "--target", "wasm32-wasi").Output()
	if err != nil {
		return &MissingToolchainError{"rust", "the wasm32-wasi target of rustc", InstallRust, err}
	}
	libs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "libstd-*.rlib"))
	if len(libs) == 0 {
		return &MissingToolchainError{"rust", "the Rust standard library for wasm32-wasi", InstallRust, nil}
	}
	return nil
}

// diagnose recognises a compiler failure caused by a missing piece of the
// toolchain rather than by the code.
func diagnose(lang, output string) *MissingToolchainError {
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(output, x) {
				return true
			}
		}
		return false
	}
	switch lang {
	case "c":
		switch {
		case has("wasm-ld", "unable to execute command") && has("not found", "No such file", "unable to execute"):
			return &MissingToolchainError{Language: "c", Tool: "the wasm linker wasm-ld", Install: "apt-get install lld"}
		case has("libclang_rt.builtins-wasm32"):
			return &MissingToolchainError{Language: "c", Tool: "the wasm32 compiler runtime", Install: "apt-get install libclang-rt-14-dev-wasm32"}
		case has("file not found", "cannot find -lc", "crt1", "wasi-sysroot", "unable to find library -lc"):
			return &MissingToolchainError{Language: "c", Tool: "the wasi C library (sysroot)", Install: "apt-get install wasi-libc"}
		}
	case "go":
		if has("unsupported GOOS/GOARCH pair", "go:wasmexport", "cannot find GOROOT", "requires go >=") {
			return &MissingToolchainError{Language: "go", Tool: "Go >= 1.24 with wasip1 support", Install: InstallGo}
		}
	case "rust":
		if has("can't find crate for `std`", "may not be installed") {
			return &MissingToolchainError{Language: "rust", Tool: "the Rust standard library for wasm32-wasi", Install: InstallRust}
		}
	}
	return nil
}
