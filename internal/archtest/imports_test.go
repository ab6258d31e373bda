package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/wispfn/wisp"

type pkg struct {
	ImportPath string
	Standard   bool
	Deps       []string
	Imports    []string
}

// list runs `go list -deps -json` over patterns from the module root.
func list(t *testing.T, patterns ...string) map[string]pkg {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not on PATH")
	}
	args := append([]string{"list", "-deps", "-json=ImportPath,Standard,Deps,Imports"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := list(t, "./...")
	for path, p := range pkgs {
		if !strings.HasPrefix(path, module+"/") {
			continue
		}
		rel := strings.TrimPrefix(path, module+"/")
		switch {
		case strings.HasPrefix(rel, "protocol") || strings.HasPrefix(rel, "cache"):
			for _, d := range p.Deps {
				if dp, ok := pkgs[d]; ok && !dp.Standard && !strings.HasPrefix(d, module+"/protocol") && !strings.HasPrefix(d, module+"/cache") {
					t.Errorf("%s depends on %s: protocol/ and cache/ may use only the standard library", rel, d)
				}
			}
		case rel == "internal/authlimit":
			for _, d := range p.Deps {
				if dp, ok := pkgs[d]; ok && !dp.Standard && d != module+"/cache" {
					t.Errorf("%s depends on %s: it may use only the standard library and cache/, so both servers can link it", rel, d)
				}
			}
		case rel == "internal/keypin":
			for _, d := range p.Deps {
				if dp, ok := pkgs[d]; ok && !dp.Standard && !strings.HasPrefix(d, module+"/protocol") {
					t.Errorf("%s depends on %s: it may use only the standard library and protocol/, so any binary can link it", rel, d)
				}
			}
		case rel == "internal/settings":
			for _, d := range p.Deps {
				if strings.HasPrefix(d, module+"/controller") || strings.HasPrefix(d, module+"/agent") {
					t.Errorf("%s depends on %s: the settings table serves both servers and must import neither", rel, d)
				}
			}
		case strings.HasPrefix(rel, "agent"):
			for _, d := range p.Deps {
				if strings.HasPrefix(d, module+"/controller") {
					t.Errorf("%s depends on %s: agent/ must never import controller/", rel, d)
				}
			}
		}
	}
}

// TestAgentBinaryDeps keeps the edge binary small: no Postgres driver, no
// fiber, no controller code.
func TestAgentBinaryDeps(t *testing.T) {
	if m, _ := filepath.Glob("../../cmd/wisp-agent/*.go"); len(m) == 0 {
		t.Skip("cmd/wisp-agent has no Go files yet")
	}
	pkgs := list(t, "./cmd/wisp-agent")
	if len(pkgs) == 0 {
		t.Fatal("go list returned nothing for ./cmd/wisp-agent")
	}
	forbidden := []string{"github.com/jackc/pgx", "github.com/gofiber/fiber", module + "/controller"}
	for path := range pkgs {
		for _, f := range forbidden {
			if strings.HasPrefix(path, f) {
				t.Errorf("wisp-agent links %s (forbidden prefix %s)", path, f)
			}
		}
	}
}
