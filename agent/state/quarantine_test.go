package state

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wispfn/wisp/protocol"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

func quarantined(s *State) []string {
	var out []string
	for _, q := range s.Quarantine() {
		out = append(out, q.Digest)
	}
	return out
}

// TestKill9QuarantinesWhatWasRunning marks code in a child process the way
// an invocation does, kills the child with SIGKILL while one mark is held,
// and reopens the state: the digest held at the kill is quarantined with a
// reason, reported as a crash and unreported to any controller; the one
// whose mark was cleared before the kill is not.
func TestKill9QuarantinesWhatWasRunning(t *testing.T) {
	if path := os.Getenv("WISP_STATE_MARK_CHILD"); path != "" {
		markChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "agent.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9QuarantinesWhatWasRunning$")
	cmd.Env = append(os.Environ(), "WISP_STATE_MARK_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "running" {
			ready = true
			break
		}
		t.Logf("child: %s", sc.Text())
	}
	if !ready {
		cmd.Wait()
		t.Fatal("the child never started running")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	before := time.Now()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	crashes := s.Crashes()
	if len(crashes) != 1 || crashes[0].Digest != digestA || crashes[0].Activity != "running" || crashes[0].Alongside != 0 ||
		crashes[0].Since.After(before) || crashes[0].Since.Before(before.Add(-time.Minute)) {
		t.Fatalf("Crashes() = %+v, want %s running", crashes, digestA)
	}
	q, ok := s.Quarantined(digestA)
	if !ok || q.Reported || !strings.Contains(q.Reason, "died while running") {
		t.Fatalf("Quarantined(A) = %+v, %v", q, ok)
	}
	if _, ok := s.Quarantined(digestB); ok {
		t.Fatal("B was cleared before the kill and is quarantined anyway")
	}
	if got := s.UnreportedCrashes(); len(got) != 1 || got[0].Digest != digestA || got[0].SinceUnixMS != uint64(q.Since.UnixMilli()) {
		t.Fatalf("UnreportedCrashes() = %+v", got)
	}
	// The markers start over: the crash is found once, the quarantine stays.
	s.Close()
	s = open(t, path)
	if c := s.Crashes(); len(c) != 0 {
		t.Fatalf("a second open found the crash again: %+v", c)
	}
	if got := quarantined(s); !slices.Equal(got, []string{digestA}) {
		t.Fatalf("quarantine after a clean reopen = %v", got)
	}
}

// markChild marks B and clears it, then marks A and waits to be killed.
func markChild(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	clearB, err := s.MarkRunning(digestB, "compiling")
	if err != nil {
		fmt.Println("mark B:", err)
		os.Exit(1)
	}
	clearB()
	if _, err := s.MarkRunning(digestA, "running"); err != nil {
		fmt.Println("mark A:", err)
		os.Exit(1)
	}
	fmt.Println("running")
	time.Sleep(time.Minute)
	os.Exit(1)
}

// TestMarksWithoutAKill: marks cleared before a clean close, or left by an
// orderly Close, quarantine nothing; marks left in the file by a process
// that died do, several at once, each saying how many ran alongside it.
// Slots are reused, so the file stays as long as the most marks held at
// once, and a slot with a bad checksum is ignored.
func TestMarksWithoutAKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		clear, err := s.MarkRunning(digestA, "running")
		if err != nil {
			t.Fatal(err)
		}
		clear()
		clear() // a second call is harmless
	}
	held := []func(){}
	for _, d := range []string{digestA, digestB, digestC} {
		clear, err := s.MarkRunning(d, "running")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, clear)
	}
	if got := marked(t, path); got != 3 {
		t.Fatalf("%d slots marked, want 3 (slots are not reused)", got)
	}
	s.Close() // orderly: the marks are cleared
	for _, c := range held {
		c() // clearing after close writes nowhere that matters
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	if c := s.Crashes(); len(c) != 0 || len(s.Quarantine()) != 0 {
		t.Fatalf("after an orderly close: crashes %+v, quarantine %v", c, quarantined(s))
	}

	// A process that died with three marks, one of them torn.
	clearA, _ := s.MarkRunning(digestA, "running")
	s.MarkRunning(digestB, "compiling")
	s.MarkRunning(digestC, "running")
	clearA()
	s.MarkRunning(digestA, "instantiating") // reuses A's slot
	if got := marked(t, path); got != 3 {
		t.Fatalf("%d slots marked, want 3", got)
	}
	s.marks.mem[2*slotSize+10] = 0xff // C's digest, after its checksum
	die(s)

	s = open(t, path)
	got := map[string]Crash{}
	for _, c := range s.Crashes() {
		got[c.Digest] = c
	}
	if len(got) != 2 || got[digestA].Activity != "instantiating" || got[digestB].Activity != "compiling" ||
		got[digestA].Alongside != 1 || got[digestB].Alongside != 1 {
		t.Fatalf("crashes = %+v, want A instantiating and B compiling (C's slot is torn)", s.Crashes())
	}
	if q, _ := s.Quarantined(digestB); !strings.Contains(q.Reason, "alongside 1 other") {
		t.Fatalf("reason %q does not say what ran alongside", q.Reason)
	}
	if _, err := s.MarkRunning(strings.Repeat("x", 200), "running"); err == nil {
		t.Fatal("a 200-byte digest was marked")
	}
}

// die closes s the way a dead process leaves it: the marks stay.
func die(s *State) {
	s.journal.close()
	unmap(s.marks.mem)
	s.marks.f.Close()
	s.db.Close()
}

// marked counts the marked slots in the file at path (read, not mapped).
func marked(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path + runningSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != maxMarks*slotSize {
		t.Fatalf("marker file of %d bytes, want %d", len(b), maxMarks*slotSize)
	}
	n := 0
	for off := 0; off < len(b); off += slotSize {
		if b[off] == 1 {
			n++
		}
	}
	return n
}

// TestMarksRunOut: more marks at once than slots fail instead of
// overwriting a held one; a freed slot can be marked again.
func TestMarksRunOut(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	var clears []func()
	for range maxMarks {
		c, err := s.MarkRunning(digestA, "running")
		if err != nil {
			t.Fatal(err)
		}
		clears = append(clears, c)
	}
	if _, err := s.MarkRunning(digestB, "running"); !errors.Is(err, errMarksFull) {
		t.Fatalf("mark %d: %v, want errMarksFull", maxMarks+1, err)
	}
	clears[7]()
	if _, err := s.MarkRunning(digestB, "running"); err != nil {
		t.Fatalf("after a clear: %v", err)
	}
}

// TestQuarantineSets: a controller's set replaces what controllers sent
// before and keeps this agent's unrecorded crashes; a recorded crash is the
// controller's to release; everything survives a reopen.
func TestQuarantineSets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// As Open does after a crash with A running.
	if err := s.updateQuarantine(func(b *bolt.Bucket, _ map[string]QuarantineEntry) error {
		return putQuarantine(b, QuarantineEntry{Digest: digestA, Reason: "crash", Since: time.UnixMilli(1000).UTC()})
	}); err != nil {
		t.Fatal(err)
	}
	since := time.UnixMilli(5000).UTC()
	released, err := s.SetQuarantine([]protocol.QuarantineEntry{{Digest: digestB, Reason: "crashed edge2", SinceUnixMS: 5000}})
	if err != nil || len(released) != 0 {
		t.Fatalf("SetQuarantine: %v, %v", released, err)
	}
	if got := quarantined(s); !slices.Equal(got, []string{digestA, digestB}) {
		t.Fatalf("after the first set: %v", got)
	}
	if q, _ := s.Quarantined(digestB); !q.Reported || q.Reason != "crashed edge2" || !q.Since.Equal(since) {
		t.Fatalf("B = %+v", q)
	}
	// The controller releases B; A is not its to release yet.
	if released, err = s.SetQuarantine(nil); err != nil || !slices.Equal(released, []string{digestB}) {
		t.Fatalf("empty set released %v, %v", released, err)
	}
	if got := quarantined(s); !slices.Equal(got, []string{digestA}) {
		t.Fatalf("after the empty set: %v (the unrecorded crash must stay)", got)
	}
	if err := s.CrashesRecorded([]string{digestA, digestC}); err != nil {
		t.Fatal(err)
	}
	if len(s.UnreportedCrashes()) != 0 {
		t.Fatalf("unreported after CrashesRecorded: %+v", s.UnreportedCrashes())
	}
	if _, err := s.SetQuarantine([]protocol.QuarantineEntry{{Digest: digestA, Reason: "crash", SinceUnixMS: 1000}, {Digest: digestC}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	if got := quarantined(s); !slices.Equal(got, []string{digestA, digestC}) {
		t.Fatalf("after reopen: %v", got)
	}
	if released, _ := s.SetQuarantine([]protocol.QuarantineEntry{{Digest: digestC}}); !slices.Equal(released, []string{digestA}) {
		t.Fatalf("recorded crash not released by the controller's set: %v", released)
	}
	if err := s.ReleaseQuarantine(digestC, digestB); err != nil {
		t.Fatal(err)
	}
	if len(s.Quarantine()) != 0 {
		t.Fatalf("after ReleaseQuarantine: %v", quarantined(s))
	}
	err = &QuarantineError{Entry: QuarantineEntry{Digest: digestA, Reason: "r", Since: since}}
	if !errors.Is(err, ErrQuarantined) || !strings.Contains(err.Error(), "sha256:aaaaaaaaaaaa is quarantined") {
		t.Fatalf("QuarantineError: %v", err)
	}
}

// BenchmarkMarkRunning is the crash marker's cost on every invocation: mark
// and clear one slot, with as many marks held by other goroutines as the
// benchmark runs in parallel.
func BenchmarkMarkRunning(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "agent.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			clear, err := s.MarkRunning(digestA, "running")
			if err != nil {
				b.Fatal(err)
			}
			clear()
		}
	})
}
