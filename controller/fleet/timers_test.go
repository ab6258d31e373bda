package fleet

import (
	"slices"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/protocol"
)

// TestLocalTimers: the desired set carries the edge-local timers only,
// cron as stored and every in milliseconds; MQTT events and cloud timers
// stay out of it.
func TestLocalTimers(t *testing.T) {
	evs := []fnspec.Event{
		{Type: "mqtt", Params: fnspec.EventParams{Topic: "t", Local: true}},
		{Type: "timer", Params: fnspec.EventParams{Cron: "*/5 * * * MON", Local: true}},
		{Type: "timer", Params: fnspec.EventParams{Every: "1m30s", Local: true}},
		{Type: "timer", Params: fnspec.EventParams{Every: "1s"}},                // the controller's
		{Type: "timer", Params: fnspec.EventParams{Every: "oops", Local: true}}, // unreadable: left out
	}
	got := localTimers(evs)
	want := []protocol.Timer{{Cron: "*/5 * * * MON"}, {EveryMS: 90000}}
	if !slices.Equal(got, want) {
		t.Fatalf("localTimers = %+v, want %+v", got, want)
	}
	if got := fnspec.LocalTopics(evs); !slices.Equal(got, []string{"t"}) {
		t.Fatalf("LocalTopics = %v", got)
	}
	if localTimers(nil) != nil {
		t.Fatal("no events, some timers")
	}
}
