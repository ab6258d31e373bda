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

// stdlibOnly lists the packages that import only the standard library:
// the wire format and the LRU (shared by both binaries), and the small
// packages both sides share that are not wire format: activation ids and
// MQTT topic filters.
func stdlibOnly(rel string) bool {
	for _, p := range []string{"protocol", "cache", "internal/activationid", "internal/mqtttopic"} {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

func TestImportRules(t *testing.T) {
	pkgs := list(t, "./...")
	for path, p := range pkgs {
		if !strings.HasPrefix(path, module+"/") {
			continue
		}
		rel := strings.TrimPrefix(path, module+"/")
		switch {
		case stdlibOnly(rel):
			for _, d := range p.Deps {
				if dp, ok := pkgs[d]; ok && !dp.Standard && !stdlibOnly(strings.TrimPrefix(d, module+"/")) {
					t.Errorf("%s depends on %s: %s may use only the standard library", rel, d, rel)
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

// TestAgentLayers keeps the agent's local activations in one place: the
// local API is HTTP only and the triggers MQTT only, both over
// agent/activation (the triggers through the Invoke the agent gives them,
// so they work with the local API off), and agent/activation speaks
// neither HTTP nor MQTT.
func TestAgentLayers(t *testing.T) {
	pkgs := list(t, "./agent/...")
	forbidden := map[string][]string{
		"agent/activation": {"net/http", module + "/agent/localapi", module + "/agent/triggers", "github.com/eclipse/paho.mqtt.golang"},
		"agent/localapi":   {module + "/agent/executor", module + "/agent/state", module + "/agent/triggers"},
		"agent/triggers":   {module + "/agent/localapi", module + "/agent/activation", module + "/agent/executor", module + "/agent/state"},
	}
	for rel, bad := range forbidden {
		p, ok := pkgs[module+"/"+rel]
		if !ok {
			t.Errorf("%s: not found", rel)
			continue
		}
		for _, imp := range p.Imports {
			for _, b := range bad {
				if imp == b || strings.HasPrefix(imp, b+"/") {
					t.Errorf("%s imports %s", rel, imp)
				}
			}
		}
	}
}
