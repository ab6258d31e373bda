package runtime

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// TestTrack: Config.Track hears of a compile, then of each run, before
// they start and (through done) once they are over, with the digest.
func TestTrack(t *testing.T) {
	var mu sync.Mutex
	var events []string
	open := map[Work]int{}
	r := newRuntime(t, Config{MaxConcurrent: 1, Track: func(_ context.Context, digest string, w Work) func() {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, w.String()+" "+digest[:13])
		open[w]++
		return func() {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, "done "+w.String())
			open[w]--
		}
	}})
	code := fixture(t, "hello_wat")
	digest := Digest(code)
	if _, err := r.Load(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.Invoke(context.Background(), digest, Request{Input: []byte(`{"name":"T"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	r.Close(context.Background()) // no spare instantiation after this
	mu.Lock()
	defer mu.Unlock()
	// Instantiations are tracked too, but when they happen depends on how
	// soon the spare instance is ready (inside a run on a busy machine,
	// between runs on a quiet one): they are checked apart.
	var runs []string
	for _, e := range events {
		switch e {
		case "instantiating " + digest[:13], "done instantiating":
		default:
			runs = append(runs, e)
		}
	}
	want := []string{"compiling " + digest[:13], "done compiling", "running " + digest[:13], "done running", "running " + digest[:13], "done running"}
	if !slices.Equal(runs, want) {
		t.Fatalf("tracked %q, want %q (instantiations aside)", events, want)
	}
	if open[WorkCompile] != 0 || open[WorkRun] != 0 || open[WorkSpare] != 0 {
		t.Fatalf("work still open: %v", open)
	}
}
