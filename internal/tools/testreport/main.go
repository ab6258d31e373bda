// Command testreport reads `go test -json` on stdin and prints what a person
// needs: a line per package as go test prints it, the compiler's output for
// every package that did not build, the full output of every failed test,
// every skipped test with its reason, and a closing line
// "N passed, N failed, N skipped". It exits 1 if anything failed, so
// `make test` fails when a test, a build or a package fails.
//
// It exists because plain `go test` hides skips: a test skipped for a
// missing service must say so.
//
// # Counting
//
// "passed" and "skipped" count tests. "failed" counts failed tests plus every
// package that failed without a failed test of its own: a package that did
// not compile (its tests never ran, so there is nothing else to count) or
// whose test binary failed outside a test (a panic in TestMain, a timeout).
//
// # Build failures
//
// Since Go 1.24 `go test -json` sends the compiler's (and vet's) messages as
// events {"Action":"build-output","ImportPath":...}, then
// {"Action":"build-fail","ImportPath":...}, and the failed package's closing
// event names the package that did not build in FailedBuild (which may be a
// dependency: several packages can fail on one broken import; its output is
// printed once). Lines that are not JSON (older Go, `go vet` errors, a
// missing package) are printed as they come.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// logLine is how a test's t.Log and t.Skip messages start.
var logLine = regexp.MustCompile(`^\S+\.go:\d+: `)

type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	ImportPath  string // build-output and build-fail events
	FailedBuild string // a package's fail event: the build that failed
}

func main() { os.Exit(run(os.Stdin, os.Stdout)) }

func run(in io.Reader, out io.Writer) int {
	outputs := map[string]*strings.Builder{} // package/test -> output
	key := func(e event) string { return e.Package + "\x00" + e.Test }
	builds := map[string]*strings.Builder{} // import path -> compiler output
	var brokenBuilds []string               // import paths whose build-fail event came
	printed := map[string]bool{}            // import paths whose compiler output is printed
	failedTests := map[string]bool{}        // packages with a failed test
	printBuild := func(path string) {
		if !printed[path] {
			printed[path] = true
			if b := builds[path]; b != nil {
				fmt.Fprint(out, b.String())
			}
		}
	}
	var passed, failed, skipped int
	var skips, failures []string
	pkgFailed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(out, string(line)) // output of tools that do not speak JSON
			continue
		}
		switch e.Action {
		case "build-output":
			b := builds[e.ImportPath]
			if b == nil {
				b = &strings.Builder{}
				builds[e.ImportPath] = b
			}
			b.WriteString(e.Output)
		case "build-fail":
			brokenBuilds = append(brokenBuilds, e.ImportPath)
		case "output":
			b := outputs[key(e)]
			if b == nil {
				b = &strings.Builder{}
				outputs[key(e)] = b
			}
			b.WriteString(e.Output)
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(outputs, key(e))
		case "skip":
			if e.Test == "" {
				fmt.Fprintf(out, "?   \t%s\t[no test files]\n", e.Package)
				continue
			}
			skipped++
			var reason []string // the last message (file.go:N: ...) and its continuation lines
			if b := outputs[key(e)]; b != nil {
				for l := range strings.Lines(b.String()) {
					t := strings.TrimSpace(l)
					switch {
					case t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP"):
					case logLine.MatchString(t):
						reason = []string{t}
					default:
						reason = append(reason, t)
					}
				}
			}
			skips = append(skips, fmt.Sprintf("SKIP %s %s: %s", e.Package, e.Test, strings.Join(reason, " ")))
			delete(outputs, key(e))
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				if e.FailedBuild != "" {
					printBuild(e.FailedBuild)
				}
				text := ""
				if b := outputs[key(e)]; b != nil {
					text = b.String()
				}
				fmt.Fprint(out, text)
				if !strings.Contains(text, "FAIL\t"+e.Package) { // go test's own "FAIL\tpkg [build failed]" or "FAIL\tpkg\t1.2s"
					fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
				}
				if !failedTests[e.Package] {
					failed++ // nothing else counts this package's failure
				}
				delete(outputs, key(e))
				continue
			}
			failed++
			failedTests[e.Package] = true
			if b := outputs[key(e)]; b != nil {
				failures = append(failures, b.String())
			}
			delete(outputs, key(e))
		}
	}
	for _, path := range brokenBuilds { // a failed build that no package's result named
		if printed[path] {
			continue
		}
		printBuild(path)
		fmt.Fprintf(out, "FAIL\t%s [build failed]\n", path)
		failed++
		pkgFailed = true
	}
	for _, f := range failures {
		fmt.Fprint(out, f)
	}
	if len(skips) > 0 {
		sort.Strings(skips)
		fmt.Fprintf(out, "\n%d skipped tests (set WISP_REQUIRE_SERVICES=1 to make a missing service fail them):\n", len(skips))
		for _, s := range skips {
			fmt.Fprintln(out, "  "+s)
		}
	}
	fmt.Fprintf(out, "\n%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed {
		return 1
	}
	return 0
}
