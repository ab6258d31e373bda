package deploytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// repo is the repository root; bin holds the native binaries TestMain builds.
var repo, bin string

func TestMain(m *testing.M) {
	os.Exit(doMain(m))
}

func doMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repo = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "wisp-deploytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = dir
	if err := build(filepath.Join(bin, runtime.GOARCH), runtime.GOARCH, "", "./cmd/wisp-controller", "./cmd/wisp-agent"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// build compiles pkgs for linux/goarch into dir the way scripts/release.sh
// does (static, trimmed, stripped), without the race detector.
func build(dir, goarch, goarm string, pkgs ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", dir + "/"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %v\n%s", pkgs, goarch, err, out)
	}
	return nil
}

// nativeBin is the path of a binary TestMain built.
func nativeBin(name string) string { return filepath.Join(bin, runtime.GOARCH, name) }
