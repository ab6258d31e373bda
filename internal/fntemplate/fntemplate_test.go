package fntemplate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	want := map[string][]string{
		"c":    {".gitignore", "README.md", "main.c", "wisp.yaml"},
		"go":   {".gitignore", "README.md", "go.mod", "main.go", "wisp.yaml"},
		"rust": {".gitignore", "README.md", "src/lib.rs", "wisp.yaml"},
	}
	for _, lang := range Languages {
		t.Run(lang, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "p")
			got, err := New(dir, Project{Name: "my_fn", Language: lang})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(want[lang], ",") {
				t.Errorf("files %v, want %v", got, want[lang])
			}
			p, err := Load(dir)
			if err != nil || p != (Project{Name: "my_fn", Language: lang}) {
				t.Errorf("Load: %+v, %v", p, err)
			}
			for _, f := range got {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				if strings.Contains(string(b), "{{") {
					t.Errorf("%s: unexpanded template: %s", f, b)
				}
			}
		})
	}
}

func TestBadProjects(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"bad name", "name: a-b\nlanguage: c\n", `invalid function name "a-b"`},
		{"bad language", "name: a\nlanguage: zig\n", `unknown language "zig"`},
		{"not yaml", "name: [\n", "wisp.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, ProjectFile), []byte(tt.yaml), 0o644)
			if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNoProject) {
		t.Errorf("Load of an empty dir: %v", err)
	}
}

func TestDiagnose(t *testing.T) {
	tests := []struct {
		lang, output, want string // want: the install hint, "" for a code error
	}{
		{"c", "clang: error: unable to execute command: Executable \"wasm-ld\" doesn't exist!", "apt-get install lld"},
		{"c", "fatal error: 'stdlib.h' file not found", "apt-get install wasi-libc"},
		{"c", "wasm-ld: error: cannot open /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a", "apt-get install libclang-rt-14-dev-wasm32"},
		{"c", "main.c:3:1: error: expected ';'", ""},
		{"rust", "error[E0463]: can't find crate for `std`", InstallRust},
		{"go", "go: go.mod requires go >= 1.24 (running go 1.19)", InstallGo},
		{"go", "./main.go:3: undefined: x", ""},
	}
	for _, tt := range tests {
		m := diagnose(tt.lang, tt.output)
		switch {
		case tt.want == "" && m != nil:
			t.Errorf("%s %q: diagnosed %v", tt.lang, tt.output, m)
		case tt.want != "" && (m == nil || m.Install != tt.want):
			t.Errorf("%s %q: got %v, want %q", tt.lang, tt.output, m, tt.want)
		}
	}
}
