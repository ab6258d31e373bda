package state

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/protocol"
)

func entry(id string) outboxReq {
	e := protocol.OutboxEntry{ActivationID: id, Module: "_", Function: "f", Output: []byte(`{"ok":true}`)}
	return outboxReq{entry: e.Append(nil), id: id}
}

func outboxIDs(t *testing.T, s *State) []string {
	t.Helper()
	es, err := s.Outbox(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ActivationID)
	}
	return ids
}

// TestJournalReplay: what a crash leaves in the journal reaches the outbox
// at the next Open; a torn tail, a frame of an older epoch and a zeroed
// header each end the replay.
func TestJournalReplay(t *testing.T) {
	ids := []string{"01a", "01b", "01c", "01d"}
	key := []byte("message-key")
	cases := []struct {
		name  string
		write func() []byte
		want  []string
	}{
		{"intact", func() []byte {
			var b []byte
			for _, id := range ids[:3] {
				b = appendFrame(b, 7, new(entry(id)))
			}
			return b
		}, ids[:3]},
		{"torn tail", func() []byte {
			var b []byte
			for _, id := range ids[:3] {
				b = appendFrame(b, 7, new(entry(id)))
			}
			return b[:len(b)-5]
		}, ids[:2]},
		{"corrupt frame", func() []byte {
			b := appendFrame(nil, 7, new(entry(ids[0])))
			n := len(b)
			b = appendFrame(b, 7, new(entry(ids[1])))
			b[n+frameHeaderLen+3] ^= 0xff
			return appendFrame(b, 7, new(entry(ids[2])))
		}, ids[:1]},
		{"older epoch behind", func() []byte {
			b := appendFrame(nil, 8, new(entry(ids[0])))
			b = appendFrame(b, 8, new(entry(ids[1])))
			return appendFrame(b, 7, new(entry(ids[3]))) // left from before a start over
		}, ids[:2]},
		{"zero header first", func() []byte {
			return append(make([]byte, frameHeaderLen), appendFrame(nil, 7, new(entry(ids[0])))...)
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.db")
			if err := os.WriteFile(path+journalSuffix, c.write(), 0o600); err != nil {
				t.Fatal(err)
			}
			s := open(t, path)
			if got := outboxIDs(t, s); !slices.Equal(got, c.want) {
				t.Fatalf("outbox %v, want %v", got, c.want)
			}
		})
	}

	t.Run("key", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.db")
		r := entry(ids[0])
		r.key = key
		os.WriteFile(path+journalSuffix, appendFrame(nil, 1, &r), 0o600)
		s := open(t, path)
		if id, ok := s.Seen(key); !ok || id != ids[0] {
			t.Fatalf("Seen = %q %v after replay", id, ok)
		}
	})

	t.Run("replayed once", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.db")
		os.WriteFile(path+journalSuffix, appendFrame(nil, 1, new(entry(ids[0]))), 0o600)
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AckOutbox(ids[0]); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = open(t, path)
		if got := outboxIDs(t, s); len(got) != 0 {
			t.Fatalf("an acknowledged entry came back from the journal: %v", got)
		}
	})
}

// TestAppendVisibleAtOnce: Outbox and Seen see an append as soon as it
// returned, although bbolt gets it in the background.
func TestAppendVisibleAtOnce(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	for i := range 50 {
		id := activationid.New(time.Now())
		key := []byte(fmt.Sprintf("key-%d", i))
		var err error
		if i%2 == 0 {
			err = s.AppendOutboxKeyed(&protocol.OutboxEntry{ActivationID: id}, key)
		} else {
			err = s.AppendOutboxUnsynced(&protocol.OutboxEntry{ActivationID: id})
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if got, ok := s.Seen(key); !ok || got != id {
				t.Fatalf("Seen right after the append = %q %v", got, ok)
			}
		}
		if got := outboxIDs(t, s); len(got) != i+1 || got[i] != id {
			t.Fatalf("after %d appends the outbox holds %d, last %v", i+1, len(got), got[len(got)-1:])
		}
	}
}

// TestJournalFailureRefusesAppends: once a journal write fails, appends
// fail (they are not counted as recorded) until the state is reopened.
func TestJournalFailureRefusesAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendOutbox(&protocol.OutboxEntry{ActivationID: "01ok"}); err != nil {
		t.Fatal(err)
	}
	s.journal.f.Close() // every write fails from now on
	for range 2 {
		if err := s.AppendOutbox(&protocol.OutboxEntry{ActivationID: "01lost"}); err == nil {
			t.Fatal("append succeeded on a failed journal")
		}
	}
	s.Close()
	s = open(t, path)
	if got := outboxIDs(t, s); !slices.Equal(got, []string{"01ok"}) {
		t.Fatalf("outbox %v, want only the entry that was acknowledged", got)
	}
}

// TestKill9KeepsEveryAppend runs appends in a child process, kills it with
// SIGKILL while they go on, and checks that every append the child saw
// return is in the outbox after a reopen. The journal's 25ms linger means
// the kill nearly always finds entries that bbolt does not hold yet.
func TestKill9KeepsEveryAppend(t *testing.T) {
	if path := os.Getenv("WISP_STATE_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "agent.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsEveryAppend$")
		cmd.Env = append(os.Environ(), "WISP_STATE_KILL_CHILD="+path, "WISP_STATE_KILL_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []string
		sc := bufio.NewScanner(out)
		for sc.Scan() && len(acked) < 300+round*100 {
			if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
				acked = append(acked, id)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // what it printed before dying counts too
			if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
				acked = append(acked, id)
			}
		}
		cmd.Wait()
		if len(acked) == 0 {
			t.Fatal("the child acknowledged nothing")
		}
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		have := outboxIDs(t, s)
		for _, id := range acked {
			if _, found := slices.BinarySearch(have, id); !found {
				t.Fatalf("round %d: %s was acknowledged before the kill and is not in the outbox (%d acked, %d in the outbox)", round, id, len(acked), len(have))
			}
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		t.Logf("round %d: %d acknowledged before kill -9, all in the outbox (%d entries)", round, len(acked), len(have))
	}
}

func killChild(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	round := os.Getenv("WISP_STATE_KILL_ROUND")
	for i := 0; ; i++ {
		id := activationid.New(time.Now())
		e := &protocol.OutboxEntry{ActivationID: id, Module: "_", Function: "f", Output: []byte(`{}`)}
		var err error
		if i%2 == 0 {
			err = s.AppendOutboxUnsynced(e)
		} else {
			err = s.AppendOutboxKeyed(e, []byte("round-"+round+"-"+strconv.Itoa(i)))
		}
		if err == nil {
			fmt.Fprintln(w, "acked", id)
			w.Flush()
		}
	}
}

// TestStage2Gathers: appends do not each cost a bbolt transaction; a reader
// of the outbox gets them committed at once instead of after the linger.
func TestStage2Gathers(t *testing.T) {
	defer func(d time.Duration) { commitLinger = d }(commitLinger)
	commitLinger = time.Hour
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	for i := range 100 {
		e := &protocol.OutboxEntry{ActivationID: activationid.New(time.Now())}
		var err error
		if i%2 == 0 {
			err = s.AppendOutbox(e)
		} else {
			err = s.AppendOutboxUnsynced(e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s.journal.mu.Lock()
	commits := s.journal.commits
	s.journal.mu.Unlock()
	if commits != 0 {
		t.Fatalf("%d bbolt transactions while lingering", commits)
	}
	if n := s.OutboxLen(); n != 100 {
		t.Fatalf("outbox holds %d, want 100", n)
	}
	s.journal.mu.Lock()
	commits = s.journal.commits
	s.journal.mu.Unlock()
	if commits != 1 {
		t.Fatalf("the reader's flush took %d bbolt transactions, want 1", commits)
	}
}

// FuzzParseFrame: any bytes, raw or as the payload of a frame with a valid
// CRC, pass checkFrame.
func FuzzParseFrame(f *testing.F) {
	r := entry("01seed")
	f.Add(appendFrame(nil, 3, &r))
	r.key = []byte("k")
	f.Add(appendFrame(nil, 1<<40, &r))
	f.Add(make([]byte, frameHeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFrame(t, b)
		// The same bytes as the payload of a frame with a valid CRC, so
		// that the fuzzer reaches the key and entry decoding.
		framed := binary.LittleEndian.AppendUint32(nil, uint32(len(b)))
		framed = binary.LittleEndian.AppendUint32(framed, 0)
		framed = binary.LittleEndian.AppendUint64(framed, 9)
		framed = append(framed, b...)
		binary.LittleEndian.PutUint32(framed[4:], crc32.Checksum(framed[8:], crcTable))
		checkFrame(t, framed)
	})
}

// checkFrame: b is refused, or parsed into a frame whose re-encoding
// parses back to the same entry, key and epoch.
func checkFrame(t *testing.T, b []byte) {
	r, epoch, n, ok := parseFrame(b)
	if !ok {
		return
	}
	if n > len(b) {
		t.Fatalf("frame length %d beyond %d bytes", n, len(b))
	}
	r2, epoch2, n2, ok := parseFrame(appendFrame(nil, epoch, &r))
	if !ok || epoch2 != epoch || r2.id != r.id || string(r2.key) != string(r.key) || string(r2.entry) != string(r.entry) || n2 > n {
		t.Fatalf("round trip: %v %d %q %q, was %d %q %q", ok, epoch2, r2.id, r2.key, epoch, r.id, r.key)
	}
}

// TestOutboxStats: the counters behind the agent's outbox metrics.
func TestOutboxStats(t *testing.T) {
	defer func(d time.Duration) { commitLinger = d }(commitLinger)
	commitLinger = time.Hour // entries stay journaled: Entries must count them
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	var ids []string
	for i := range 6 {
		id := activationid.New(time.Now())
		ids = append(ids, id)
		var err error
		if i < 2 {
			err = s.AppendOutbox(&protocol.OutboxEntry{ActivationID: id})
		} else {
			err = s.AppendOutboxUnsynced(&protocol.OutboxEntry{ActivationID: id})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.OutboxStats()
	if st.Entries != 6 || st.Appended != 6 || st.Fsyncs != 2 || st.FsyncSecs <= 0 || st.Acked != 0 || st.Failed != 0 {
		t.Fatalf("after 2 synced and 4 unsynced appends: %+v", st)
	}
	if err := s.AckOutbox(ids[:4]...); err != nil { // moves the journaled entries into bbolt first
		t.Fatal(err)
	}
	if st = s.OutboxStats(); st.Entries != 2 || st.Acked != 4 {
		t.Fatalf("after acknowledging 4: %+v", st)
	}
}

// TestConcurrentAppendAndDrain: writers (synced, unsynced, keyed) and a
// drain that reads and acknowledges, all at once, as on a busy agent:
// every entry is drained exactly once and nothing is left.
func TestConcurrentAppendAndDrain(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	const writers, each = 8, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := &protocol.OutboxEntry{ActivationID: fmt.Sprintf("01%02d%05d", w, i)}
				var err error
				switch i % 3 {
				case 0:
					err = s.AppendOutbox(e)
				case 1:
					err = s.AppendOutboxUnsynced(e)
				default:
					err = s.AppendOutboxKeyed(e, []byte(e.ActivationID))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drained := map[string]int{}
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		es, err := s.Outbox(500)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range es {
			drained[e.ActivationID]++
			ids = append(ids, e.ActivationID)
		}
		if err := s.AckOutbox(ids...); err != nil {
			t.Fatal(err)
		}
		if finished && len(es) == 0 {
			break
		}
	}
	if len(drained) != writers*each {
		t.Fatalf("drained %d distinct entries, want %d", len(drained), writers*each)
	}
	for id, n := range drained {
		if n != 1 {
			t.Fatalf("%s drained %d times", id, n)
		}
	}
	if st := s.OutboxStats(); st.Entries != 0 || st.Appended != writers*each {
		t.Fatalf("after the drain: %+v", st)
	}
}

// TestJournalShrinksAfterABacklog: a journal grown by a backlog goes back
// to its preallocated size once bbolt has caught up.
func TestJournalShrinksAfterABacklog(t *testing.T) {
	defer func(d time.Duration) { commitLinger = d }(commitLinger)
	commitLinger = time.Hour
	path := filepath.Join(t.TempDir(), "agent.db")
	s := open(t, path)
	big := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 200 { // 12.8 MiB, more than 8 preallocations
		if err := s.AppendOutboxUnsynced(&protocol.OutboxEntry{ActivationID: fmt.Sprintf("01big%04d", i), Output: big}); err != nil {
			t.Fatal(err)
		}
	}
	if fi, _ := os.Stat(path + journalSuffix); fi.Size() < 8*journalPrealloc {
		t.Fatalf("journal is %d bytes after the backlog", fi.Size())
	}
	if n := s.OutboxLen(); n != 200 {
		t.Fatalf("outbox %d", n)
	}
	if fi, _ := os.Stat(path + journalSuffix); fi.Size() != journalPrealloc {
		t.Fatalf("journal is %d bytes once bbolt caught up, want %d", fi.Size(), journalPrealloc)
	}
}
