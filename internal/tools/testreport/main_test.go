package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"=== RUN   TestB\n"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    x_test.go:9: skipped: PostgreSQL unavailable\n"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestB"}`,
		`{"Action":"output","Package":"p","Test":"TestD","Output":"    d_test.go:1: a log line first\n"}`,
		`{"Action":"output","Package":"p","Test":"TestD","Output":"    d_test.go:2: skipped: rust unavailable (\n"}`,
		`{"Action":"output","Package":"p","Test":"TestD","Output":"        rustup target add wasm32-wasip1\n"}`,
		`{"Action":"output","Package":"p","Test":"TestD","Output":"        ); set X=1\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestD"}`,
		`{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestC"}`,
		`{"Action":"fail","Package":"p","Elapsed":0.5}`,
		`# q`, `q/x.go:1: syntax error`,
	}, "\n")
	var out bytes.Buffer
	if code := run(strings.NewReader(in), &out); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"FAIL\tp\t0.500s", "boom", "SKIP p TestB: x_test.go:9: skipped: PostgreSQL unavailable",
		"SKIP p TestD: d_test.go:2: skipped: rust unavailable ( rustup target add wasm32-wasip1 ); set X=1\n", "q/x.go:1: syntax error", "1 passed, 1 failed, 2 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(strings.NewReader(`{"Action":"pass","Package":"p","Test":"T"}`+"\n"+`{"Action":"pass","Package":"p","Elapsed":1}`), &out); code != 0 {
		t.Fatalf("all passing: exit %d\n%s", code, out.String())
	}
}

// TestReportBuildFailures runs `go test -json` on testdata/mod, a module with
// a package that passes (and skips), one whose test fails, one that does not
// compile and one that imports it.
func TestReportBuildFailures(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to produce the events: %v", err)
	}
	cmd := exec.Command(goBin, "test", "-json", "-count=1", "./...")
	cmd.Dir = filepath.Join("testdata", "mod")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var events, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &events, &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("go test passed on a module with a broken package:\n%s", events.String())
	}
	if !strings.Contains(events.String(), `"build-output"`) {
		t.Fatalf("go test -json sent no build-output event (stderr: %s):\n%s", stderr.String(), events.String())
	}

	var out bytes.Buffer
	if code := run(&events, &out); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	report := out.String()
	const compilerMsg = `broken/broken.go:5:28: cannot use "forty-two"`
	for _, want := range []string{
		compilerMsg,
		"FAIL\texample.com/testreport/broken [build failed]",
		"FAIL\texample.com/testreport/importer [build failed]",
		"a failure the report must show",
		"SKIP example.com/testreport/passes TestSkips: passes_test.go:7: no service here",
		// TestPasses; TestFails and the two packages that did not build; TestSkips.
		"\n1 passed, 3 failed, 1 skipped\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if n := strings.Count(report, compilerMsg); n != 1 {
		t.Errorf("the compiler's message is printed %d times, want once:\n%s", n, report)
	}
}
