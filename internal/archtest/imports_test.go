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

// controllerRules keep the controller's layers apart: the REST layer sits
// on top, the invocation vocabulary (controller/invoke) and the function
// settings (controller/fnspec) at the bottom, so the fleet and the other
// parts speak invoke, never HTTP.
var controllerRules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{"controller/fleet", []string{"controller/api"}, "the fleet implements controller/invoke and never imports the REST layer"},
	{"controller/scheduler", []string{"controller/api"}, "only the REST layer may import controller/api"},
	{"controller/store", []string{"controller/api", "controller/invoke", "controller/fleet"}, "the store is below the layers that use it"},
	{"controller/events", []string{"controller/api", "controller/fleet"}, "cloud events speak controller/invoke, never the REST layer or the fleet"},
	{"controller/sinks", []string{"controller/api", "controller/fleet"}, "only the REST layer may import controller/api"},
	{"controller/activations", []string{"controller/api", "controller/fleet"}, "only the REST layer may import controller/api"},
	{"controller/timers", []string{"controller/api", "controller/fleet"}, "cloud timers speak controller/invoke, never the REST layer or the fleet"},
	{"controller/invoke", []string{"controller/api", "controller/fleet"}, "controller/invoke is the vocabulary both sides share"},
	{"controller/secrets", []string{"controller/api", "controller/fleet", "controller/invoke"}, "secrets sit below the layers that deliver them"},
	{"controller/fnspec", []string{"controller/api", "controller/store", "controller/fleet", "controller/invoke", "controller/events", "controller/sinks"},
		"a function's settings are plain values every layer reads; fnspec depends on none of them"},
}

// stdlibOnly lists the packages that import only the standard library:
// the wire format and the LRU (shared by both binaries), and the small
// packages both sides share that are not wire format: activation ids,
// MQTT topic filters and timer schedules.
func stdlibOnly(rel string) bool {
	for _, p := range []string{"protocol", "cache", "internal/activationid", "internal/mqtttopic", "internal/cron", "internal/sealbox"} {
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
		// Test helpers (internal/testing/...) are for tests only: no
		// package's non-test code links them, but each other.
		if !strings.HasPrefix(rel, "internal/testing/") {
			for _, d := range p.Deps {
				if strings.HasPrefix(d, module+"/internal/testing/") {
					t.Errorf("%s depends on %s: test helpers are for _test.go files only", rel, d)
				}
			}
		}
		switch {
		case stdlibOnly(rel):
			for _, d := range p.Deps {
				if dp, ok := pkgs[d]; ok && !dp.Standard && !stdlibOnly(strings.TrimPrefix(d, module+"/")) {
					t.Errorf("%s depends on %s: %s may use only the standard library", rel, d, rel)
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
		for _, r := range controllerRules {
			if rel != r.pkg && !strings.HasPrefix(rel, r.pkg+"/") {
				continue
			}
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if d == module+"/"+f || strings.HasPrefix(d, module+"/"+f+"/") {
						t.Errorf("%s depends on %s: %s", rel, d, r.why)
					}
				}
			}
		}
	}
}

// TestAgentBinaryDeps keeps the edge binary small: no Postgres driver, no
// fiber, no controller code, no OpenTelemetry (the agent only echoes the
// traceparent it is given; the controller makes the spans).
func TestAgentBinaryDeps(t *testing.T) {
	if m, _ := filepath.Glob("../../cmd/wisp-agent/*.go"); len(m) == 0 {
		t.Skip("cmd/wisp-agent has no Go files yet")
	}
	pkgs := list(t, "./cmd/wisp-agent")
	if len(pkgs) == 0 {
		t.Fatal("go list returned nothing for ./cmd/wisp-agent")
	}
	forbidden := []string{"github.com/jackc/pgx", "github.com/gofiber/fiber", module + "/controller", "go.opentelemetry.io/", "google.golang.org/grpc"}
	for path := range pkgs {
		for _, f := range forbidden {
			if strings.HasPrefix(path, f) {
				t.Errorf("wisp-agent links %s (forbidden prefix %s)", path, f)
			}
		}
	}
}

// TestControllerBinaryDeps: the controller exports traces with the OTLP
// message types alone (controller/tracing), not an OpenTelemetry SDK, and
// links no gRPC (which the OTLP collector service package would bring).
func TestControllerBinaryDeps(t *testing.T) {
	pkgs := list(t, "./cmd/wisp-controller")
	if len(pkgs) == 0 {
		t.Fatal("go list returned nothing for ./cmd/wisp-controller")
	}
	if _, ok := pkgs["go.opentelemetry.io/proto/otlp/trace/v1"]; !ok {
		t.Error("wisp-controller does not link the OTLP trace types: is this test still looking at the right thing?")
	}
	for path := range pkgs {
		for _, f := range []string{"go.opentelemetry.io/otel", "google.golang.org/grpc", "go.opentelemetry.io/proto/otlp/collector"} {
			if strings.HasPrefix(path, f) {
				t.Errorf("wisp-controller links %s (forbidden prefix %s)", path, f)
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
