package node

import (
	"slices"
	"testing"

	"github.com/wispfn/wisp/protocol"
)

// TestStatusShowsTimers: the status report names each edge-local timer,
// even one a hostile controller sent with an absurd period.
func TestStatusShowsTimers(t *testing.T) {
	fs := []protocol.DesiredFunction{{Module: "m", Name: "f", Timers: []protocol.Timer{{Cron: "*/5 * * * *"}, {EveryMS: 90000}, {EveryMS: ^uint64(0)}}}}
	got := desired(fs, func(string) bool { return true })
	want := []string{"cron */5 * * * *", "every 1m30s", "every 2562047h47m16.854s"}
	if len(got) != 1 || !slices.Equal(got[0].LocalTimers, want) {
		t.Fatalf("status functions %+v, want timers %q", got, want)
	}
}
