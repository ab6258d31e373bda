package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wispfn/wisp/controller/store"
)

// TestCompact: refused while the controller runs and for Postgres; with
// the controller stopped it shrinks a file whose records were pruned.
func TestCompact(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"WISP_DATA_DIR": dir, "WISP_LISTEN": "127.0.0.1:0", "WISP_QUIC_LISTEN": "127.0.0.1:0"}
	compact := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runWith(context.Background(), append([]string{"compact"}, args...), deps{env: envFrom(env), stdout: &out, stderr: &errb})
		return code, out.String(), errb.String()
	}
	_, _, stop := startController(t, nil, env)
	if code, _, errs := compact(); code != 1 || !strings.Contains(errs, "locked") {
		t.Fatalf("compact with the controller running: %d %q", code, errs)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// 20 records of 512 KiB, all but one pruned: the file keeps its size.
	path := filepath.Join(dir, "controller.db")
	s, err := store.OpenEmbedded(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		a := store.Activation{ID: fmt.Sprintf("01CMD%021d", i), Module: "_", Function: "f", Output: bytes.Repeat([]byte("1"), 512<<10)}
		if _, err := s.RecordActivation(t.Context(), a, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PruneActivationsBeyond(t.Context(), 1, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, _ := os.Stat(path)
	code, out, errs := compact()
	after, _ := os.Stat(path)
	if code != 0 || !strings.Contains(out, path) || after.Size()*4 > fi.Size() {
		t.Fatalf("compact: %d %q %q; %d bytes -> %d", code, out, errs, fi.Size(), after.Size())
	}
	if code, _, errs := compact("--database-url", "postgres://x"); code != 2 || !strings.Contains(errs, "VACUUM") {
		t.Fatalf("compact with Postgres: %d %q", code, errs)
	}
}
