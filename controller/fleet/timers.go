package fleet

import (
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/protocol"
)

// localTimers are the edge-local timers of a function's events, as the
// desired set carries them (the agents run them: agent/timers).
func localTimers(evs []fnspec.Event) []protocol.Timer {
	var out []protocol.Timer
	for _, e := range fnspec.Timers(evs, true) {
		if _, ok := e.Schedule(); !ok {
			continue
		}
		if e.Params.Cron != "" {
			out = append(out, protocol.Timer{Cron: e.Params.Cron})
			continue
		}
		d, err := time.ParseDuration(e.Params.Every)
		if err != nil {
			continue
		}
		out = append(out, protocol.Timer{EveryMS: uint64(d.Milliseconds())})
	}
	return out
}
