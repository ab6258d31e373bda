// Package fntemplate makes and builds Wisp function projects: `wisp fn new`
// writes a hello function from an embedded template (C, Go or Rust), and
// `wisp fn build` compiles it with the language's toolchain into a FunLess
// ABI v1 module (exports memory and __invoke, imports from fl_imps).
//
// A project is a directory with a wisp.yaml naming the function and its
// language; the build writes <dir>/<name>.wasm. Toolchains (as in
// scripts/build-fixtures.sh): Debian clang with wasi-libc, Go >= 1.24 from
// go.dev, Debian rustc with the wasm32-wasi standard library.
//
// It must never download anything (no cargo, no go get: the Go template uses
// the standard library only) and never write outside the project directory.
package fntemplate

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"
)

//go:embed all:files
var files embed.FS

// Languages are the template languages.
var Languages = []string{"c", "go", "rust"}

// ProjectFile is the name of the project file in a project directory.
const ProjectFile = "wisp.yaml"

// Project is the content of wisp.yaml.
type Project struct {
	Name     string `yaml:"name"`
	Language string `yaml:"language"`
}

var nameRE = regexp.MustCompile(`^[_a-zA-Z0-9]{1,160}$`)

// Validate checks the name against the controller's rule and the language.
func (p Project) Validate() error {
	if !nameRE.MatchString(p.Name) {
		return fmt.Errorf("invalid function name %q: use 1 to 160 letters, digits and underscores", p.Name)
	}
	for _, l := range Languages {
		if p.Language == l {
			return nil
		}
	}
	return fmt.Errorf("unknown language %q: want %s", p.Language, strings.Join(Languages, ", "))
}

// Errors of New and Load.
var (
	ErrExists    = errors.New("already exists and is not empty")
	ErrNoProject = errors.New("no " + ProjectFile + " (make a project with 'wisp fn new <name> -l c|go|rust')")
)

// New writes the template of p.Language into dir, which must not exist or
// be empty, and returns the paths written (relative to dir).
func New(dir string, p Project) ([]string, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s %w", dir, ErrExists)
	}
	root := "files/" + p.Language
	var written []string
	err := fs.WalkDir(files, root, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		tmpl, err := template.New(path.Base(name)).Parse(string(src))
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		var out bytes.Buffer
		if err := tmpl.Execute(&out, p); err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(name, root+"/"), ".tmpl")
		if rel == "gitignore" {
			rel = ".gitignore"
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
			return err
		}
		written = append(written, rel)
		return nil
	})
	sort.Strings(written)
	return written, err
}

// Load reads dir's project file.
func Load(dir string) (Project, error) {
	var p Project
	b, err := os.ReadFile(filepath.Join(dir, ProjectFile))
	if errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("%s: %w", dir, ErrNoProject)
	}
	if err != nil {
		return p, err
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %v", filepath.Join(dir, ProjectFile), err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s: %w", filepath.Join(dir, ProjectFile), err)
	}
	return p, nil
}
