// Command testreport reads `go test -json` on stdin and prints what a person
// needs: a line per package as go test prints it, the full output of every
// failed test, every skipped test with its reason, and a closing line
// "N passed, N failed, N skipped". It exits 1 if anything failed, so
// `make test` fails when a test, a build or a package fails.
//
// It exists because plain `go test` hides skips: a test skipped for a
// missing service must say so.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() { os.Exit(run(os.Stdin, os.Stdout)) }

func run(in io.Reader, out io.Writer) int {
	outputs := map[string]*strings.Builder{} // package/test -> output
	key := func(e event) string { return e.Package + "\x00" + e.Test }
	var passed, failed, skipped int
	var skips, failures []string
	pkgFailed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(out, string(line)) // build errors arrive as plain text
			continue
		}
		switch e.Action {
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
			reason := ""
			if b := outputs[key(e)]; b != nil {
				for l := range strings.Lines(b.String()) {
					if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- SKIP") {
						reason = t
					}
				}
			}
			skips = append(skips, fmt.Sprintf("SKIP %s %s: %s", e.Package, e.Test, reason))
			delete(outputs, key(e))
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				if b := outputs[key(e)]; b != nil {
					fmt.Fprint(out, b.String())
				}
				fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
				continue
			}
			failed++
			if b := outputs[key(e)]; b != nil {
				failures = append(failures, b.String())
			}
			delete(outputs, key(e))
		}
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
