// Package testproc runs the project's binaries as real processes in tests:
// it starts one with its output captured, waits for log lines, and kills or
// stops it; the log is printed when the test fails. Build compiles a
// binary for such a test and CheckVersion checks its version command. It
// is test support only; production code must not import it.
package testproc

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/version"
)

// AwaitTimeout bounds Await.
var AwaitTimeout = 60 * time.Second

// Proc is a running process whose combined output is kept.
type Proc struct {
	t    testing.TB
	Name string
	Cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

// Start runs path with args, named name in messages, with env added to the
// test's environment. The process is killed when the test ends, and its log
// is printed if the test failed.
func Start(t testing.TB, name, path string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, done: make(chan struct{})}
	p.Cmd = exec.Command(path, args...)
	p.Cmd.Env = append(p.Cmd.Environ(), env...)
	r, w := io.Pipe()
	p.Cmd.Stdout, p.Cmd.Stderr = w, w
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.Cmd.Wait()
		w.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", p.Name, p.Log())
		}
	})
	return p
}

// Log returns what the process printed so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Await waits for a log line matching re and returns its first group (or
// the whole match). It fails the test if the process exits first or
// AwaitTimeout passes.
func (p *Proc) Await(re string) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(AwaitTimeout)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(p.Log()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
		select {
		case <-p.done:
			if m := rx.FindStringSubmatch(p.Log()); m != nil && len(m) > 1 {
				return m[1]
			}
			p.t.Fatalf("%s exited while waiting for %q", p.Name, re)
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s: no log line matching %q", p.Name, re)
	return ""
}

// Kill sends SIGKILL (kill -9) and waits for the exit.
func (p *Proc) Kill() {
	p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to 30s for a clean exit.
func (p *Proc) Stop() {
	p.t.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop on SIGTERM", p.Name)
	}
}

// Build compiles the main package pkg (a path as go build takes it,
// relative to the test's folder) into a temporary folder and returns the
// binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if pkg == "." {
		wd, _ := os.Getwd()
		out = filepath.Join(filepath.Dir(out), filepath.Base(wd))
	}
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// CheckVersion runs the binary's `version` command and --version and fails
// the test unless each prints one line starting with program,
// version.Version and the VCS revision the binary's build info holds (when
// it holds one).
func CheckVersion(t testing.TB, bin, program string) {
	t.Helper()
	want := program + " " + version.Version
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			want += " (revision " + s.Value
		}
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), want) || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%s %s: %v %q, want one line starting %q", program, arg, err, out, want)
		}
	}
}
