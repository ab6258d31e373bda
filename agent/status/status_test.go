package status

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/protocol"
)

// TestRecentRing: the ring keeps the last n activations, newest first, and
// bounds each one's log lines with a marker for the rest.
func TestRecentRing(t *testing.T) {
	r := NewRecent(3)
	if got := r.List(); len(got) != 0 {
		t.Fatalf("empty ring lists %v", got)
	}
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		r.Add(Activation{ID: fmt.Sprint(i), Started: t0.Add(time.Duration(i) * time.Second)})
	}
	var ids []string
	for _, a := range r.List() {
		ids = append(ids, a.ID)
	}
	if strings.Join(ids, ",") != "4,3,2" {
		t.Errorf("ring after 5 adds = %v, want 4,3,2", ids)
	}

	many := make([]protocol.LogLine, 200)
	for i := range many {
		many[i] = protocol.LogLine{UnixUS: 1, Text: fmt.Sprintf("line %d", i)}
	}
	r.Add(Activation{ID: "flood", Logs: many})
	got := r.List()[0].Logs
	if len(got) != MaxLogLines+1 || got[MaxLogLines].Stream != protocol.StreamPlatform || !strings.HasPrefix(got[MaxLogLines].Text, "150 more log lines") {
		t.Errorf("a flood of 200 lines kept %d lines, last %+v", len(got), got[len(got)-1])
	}
	big := []protocol.LogLine{{Text: strings.Repeat("x", MaxLogBytes)}, {Text: "y"}}
	r.Add(Activation{ID: "big", Logs: big})
	if got := r.List()[0].Logs; len(got) != 2 || got[1].Stream != protocol.StreamPlatform {
		t.Errorf("lines over %d bytes: %+v", MaxLogBytes, got)
	}
}

// TestActivationJSON: the JSON shows times and streams by name and reads
// back to the same activation.
func TestActivationJSON(t *testing.T) {
	a := Activation{ID: "a1", Module: "m", Function: "f", Source: SourceController, Status: "ok",
		Started: time.UnixMicro(1_700_000_000_000_001).UTC(), Duration: 1500 * time.Microsecond,
		Logs: []protocol.LogLine{{UnixUS: 1_700_000_000_000_002, Stream: protocol.StreamStderr, Text: "oops"}}}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"stream":"stderr"`, `"duration_us":1500`, `"time":"2023-11-14T22:13:20.000002Z"`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("%s lacks %s", b, w)
		}
	}
	var back Activation
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != a.ID || !back.Started.Equal(a.Started) || back.Duration != a.Duration || len(back.Logs) != 1 || back.Logs[0] != a.Logs[0] {
		t.Errorf("round trip: %+v, want %+v", back, a)
	}
}
