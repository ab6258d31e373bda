package profiling

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestStartWritesTheFiles: with both variables set, Start's stop leaves a
// CPU profile (gzip) and an execution trace ("go 1.xx trace" header);
// unset, it writes nothing.
func TestStartWritesTheFiles(t *testing.T) {
	dir := t.TempDir()
	prof, tr := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "exec.trace")
	t.Setenv(Env, prof)
	t.Setenv(TraceEnv, tr)
	stop := Start()
	for i := range 1000 {
		_ = bytes.Repeat([]byte{byte(i)}, 100)
	}
	stop()
	for _, c := range []struct {
		path   string
		prefix []byte
	}{{prof, []byte{0x1f, 0x8b}}, {tr, []byte("go 1.")}} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, c.prefix) {
			t.Errorf("%s starts with %q, want %q", c.path, b[:min(len(b), 8)], c.prefix)
		}
	}

	// Unset: nothing is written (the directory stays empty).
	os.Remove(prof)
	os.Remove(tr)
	t.Setenv(Env, "")
	t.Setenv(TraceEnv, "")
	Start()()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("with the variables unset, Start wrote %v", ents)
	}
}
