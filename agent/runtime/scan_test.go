package runtime

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wispfn/wisp/internal/testing/testwasm"
)

// wazeroAccepts reports whether wazero's interpreter decodes, validates and
// compiles code (what the controller checks on upload).
func wazeroAccepts(code []byte) error {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, runtimeConfig(EngineInterpreter, nil))
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, code)
	if err == nil {
		cm.Close(ctx)
	}
	return err
}

// TestScanFixtures: every fixture wazero accepts passes the default limits,
// and its profile is what the module holds.
func TestScanFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "wasm", "*.wasm"))
	if err != nil || len(files) < 20 {
		t.Fatalf("fixtures: %v, %d files", err, len(files))
	}
	hostile := map[string]string{ // fixture -> the limit that refuses it
		"table_grow": "table_entries", "table_grow_max": "table_entries",
		"table_static": "table_entries", "tables_many": "tables",
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".wasm")
		code, _ := os.ReadFile(f)
		p, err := Scan(code, ModuleLimits{})
		if limit, ok := hostile[name]; ok {
			if KindOf(err) != KindModuleLimit || !strings.Contains(err.Error(), "module limit "+limit) {
				t.Errorf("%s: %v, want a module limit error naming %s", name, err, limit)
			}
			continue
		}
		if werr := wazeroAccepts(code); werr != nil {
			continue // invalid on purpose (invalid.wasm, notwasm.wasm)
		}
		if err != nil {
			t.Errorf("%s: wazero accepts it but Scan refuses: %v", name, err)
			continue
		}
		if p.Bytes != len(code) || p.Functions < p.Defined || p.Defined == 0 {
			t.Errorf("%s: profile %+v", name, p)
		}
	}
	// Spot checks against what the modules hold.
	p, _ := Scan(fixture(t, "hello_go"), ModuleLimits{})
	if p.Defined < 2000 || p.Imports != 20 || p.MaxNesting < 100 || p.MaxBrTable < 100 || p.Globals != 8 {
		t.Errorf("hello_go profile %+v", p)
	}
	p, _ = Scan(fixture(t, "table_capped"), ModuleLimits{})
	if !p.TableGrow || p.Tables != 1 || p.TableBytes != 2*1000*tableEntryBytes {
		t.Errorf("table_capped profile %+v", p)
	}
}

// bigGoGuest builds testdata/src/go/big (a FunLess-ABI Go reactor of about
// 16 MiB, the largest guest the defaults promise to take) once per machine,
// into the user cache dir.
func bigGoGuest(t *testing.T) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a 16 MiB Go guest")
	}
	src, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "src", "go", "big"))
	main, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "wisp-fixtures", Digest(append(main, goruntime.Version()...))[7:23]+"-big.wasm")
	if b, err := os.ReadFile(out); err == nil {
		return b
	}
	os.MkdirAll(filepath.Dir(out), 0o755)
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out+".tmp", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the big Go guest: %v\n%s", err, b)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScanBigGoGuest: the defaults take a Go guest of nearly 16 MiB with
// room to spare on every limit a Go toolchain pushes.
func TestScanBigGoGuest(t *testing.T) {
	code := bigGoGuest(t)
	if len(code) < 15<<20 || len(code) > 16<<20 {
		t.Fatalf("the big Go guest is %d bytes; the test wants 15 to 16 MiB", len(code))
	}
	p, err := Scan(code, ModuleLimits{})
	if err != nil {
		t.Fatalf("the defaults refuse a %d-byte Go guest: %v", len(code), err)
	}
	d := DefaultModuleLimits
	for _, c := range []struct {
		what      string
		got, lim  int
		headroom  int
		exactOkay bool
	}{
		{"functions", p.Functions, d.Functions, 5, false},
		{"body bytes", p.MaxBodyBytes, d.BodyBytes, 5, false},
		{"nesting", p.MaxNesting, d.Nesting, 5, false},
		{"br_table", p.MaxBrTable, d.BrTable, 5, false},
		// Go's linker merges data segments to stay at or under 100,000,
		// the limit every engine shares: the default is that very number.
		{"data segments", p.DataSegments, d.DataSegments, 1, true},
	} {
		if c.got*c.headroom > c.lim && !(c.exactOkay && c.got <= c.lim) {
			t.Errorf("%s: the Go guest has %d, the default limit %d leaves less than %dx headroom", c.what, c.got, c.lim, c.headroom)
		}
	}
	t.Logf("big Go guest: %d bytes, profile %+v", len(code), p)
}

// TestScanRefusesHostile: every hostile module of the catalogue is refused
// by Scan alone, naming its limit, in little time and memory, on modules
// that would cost an unprotected host gigabytes.
func TestScanRefusesHostile(t *testing.T) {
	for _, h := range testwasm.HostileModules() {
		t.Run(h.Name, func(t *testing.T) {
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			var err error
			took := threadCPU(func() { _, err = Scan(h.Code, ModuleLimits{}) })
			goruntime.ReadMemStats(&after)
			switch h.Limit {
			case "":
				if err != nil {
					t.Fatalf("within every limit, but Scan refuses it: %v", err)
				}
			case "invalid":
				// (Not handed to wazero: its decoder would try to allocate
				// what these modules declare.)
				if KindOf(err) != KindInvalidModule {
					t.Fatalf("%v, want KindInvalidModule", err)
				}
			default:
				if !errors.Is(err, ErrModuleLimit) || !strings.Contains(err.Error(), "(module limit "+h.Limit+")") {
					t.Fatalf("%v, want ErrModuleLimit naming %s", err, h.Limit)
				}
			}
			// Linear in the bytes: 16 MiB scan in well under a second of
			// CPU even under the race detector (0.5 s with it on a loaded
			// VM; a wall-clock bound failed when other processes held the
			// cores); and no allocation that grows with what the module
			// declares.
			t.Logf("Scan: %v of CPU", took)
			if took > 2*time.Second {
				t.Errorf("Scan took %v of CPU", took)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("Scan allocated %d bytes", alloc)
			}
		})
	}
}

// TestScanLimitsConfigurable: each limit is the operator's to move.
func TestScanLimitsConfigurable(t *testing.T) {
	code := fixture(t, "hello_c") // 13 locals, nesting 14, one table of 1
	if _, err := Scan(code, ModuleLimits{Locals: 13, Nesting: 14}); err != nil {
		t.Fatalf("at its exact profile: %v", err)
	}
	for _, c := range []struct {
		lim ModuleLimits
		key string
	}{
		{ModuleLimits{Locals: 12}, "locals"},
		{ModuleLimits{Nesting: 13}, "nesting"},
		{ModuleLimits{Bytes: 1000}, "bytes"},
		{ModuleLimits{Functions: 5}, "functions"},
		{ModuleLimits{BodyBytes: 1000}, "body_bytes"},
		{ModuleLimits{Imports: 2}, "imports"},
		{ModuleLimits{Exports: 2}, "exports"},
		{ModuleLimits{Types: 3}, "types"},
	} {
		if _, err := Scan(code, c.lim); !strings.Contains(errString(err), "module limit "+c.key+")") {
			t.Errorf("%+v: %v, want a refusal naming %s", c.lim, err, c.key)
		}
	}
}

func TestParseModuleLimits(t *testing.T) {
	l, err := ParseModuleLimits(" locals=7, nesting=9 ,,")
	if err != nil || l.Locals != 7 || l.Nesting != 9 || l.Bytes != 0 {
		t.Fatalf("%+v %v", l, err)
	}
	if l.withDefaults().Bytes != DefaultModuleLimits.Bytes {
		t.Fatal("an unset limit does not take its default")
	}
	back, err := ParseModuleLimits(DefaultModuleLimits.String())
	if err != nil || back != DefaultModuleLimits {
		t.Fatalf("String does not round-trip: %+v %v", back, err)
	}
	for _, bad := range []string{"locals", "locals=x", "locals=-1", "locals=0", "legs=4"} {
		if _, err := ParseModuleLimits(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzScan: Scan never panics, and never calls malformed what wazero
// accepts (a false refusal would turn away a legitimate module).
func FuzzScan(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "wasm", "*.wasm"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil && len(b) < 1<<20 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		_, err := Scan(code, ModuleLimits{})
		// Truncations and counts larger than what follows are exactly what
		// wazero's decoder preallocates for (gigabytes, minutes): those
		// verdicts are not handed to it. The others (unknown opcodes,
		// flags, forms, order, bytes left over) are checked against it.
		if KindOf(err) == KindInvalidModule && !strings.Contains(err.Error(), "entries but only") &&
			!strings.Contains(err.Error(), errTruncated.Error()) && !strings.Contains(err.Error(), "integer") {
			if werr := wazeroAccepts(code); werr == nil {
				t.Fatalf("Scan: %v; wazero accepts the module", err)
			}
		}
	})
}
