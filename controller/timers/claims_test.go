package timers

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/cluster"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/testing/testpg"
)

// TestCloudTimersClaimedOnPostgres: three controllers on one Postgres run
// the same 1 s cloud timer with cluster.TickClaims; each tick runs once
// across them, and no tick in between is missed.
func TestCloudTimersClaimedOnPostgres(t *testing.T) {
	t.Parallel()
	pg, err := store.OpenPostgres(t.Context(), testpg.Schema(t, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	st := &fakeStore{}
	st.set(timerFn("tick", every("1s", false)))
	disps := make([]*fakeDispatcher, 3)
	var stops []func()
	for i := range disps {
		disps[i] = &fakeDispatcher{}
		_, stop := run(t, Config{Functions: st, Dispatcher: disps[i],
			Claimer: &cluster.TickClaims{Store: pg, Owner: "ctl-" + string(rune('a'+i))}})
		stops = append(stops, stop)
	}
	time.Sleep(4500 * time.Millisecond)
	for _, stop := range stops {
		stop()
	}
	seen := map[string]int{}
	for i, d := range disps {
		for _, req := range d.requests() {
			seen[string(req.Args)]++
			t.Logf("controller %d ran %s", i, req.Args)
		}
	}
	if len(seen) < 3 {
		t.Errorf("%d ticks ran in 4.5 s of a 1 s timer", len(seen))
	}
	var first, last time.Time
	for args, n := range seen {
		if n != 1 {
			t.Errorf("tick %s ran %d times", args, n)
		}
		var tick struct{ Scheduled time.Time }
		if err := jsonUnmarshal(args, &tick); err != nil {
			t.Fatal(err)
		}
		if first.IsZero() || tick.Scheduled.Before(first) {
			first = tick.Scheduled
		}
		if tick.Scheduled.After(last) {
			last = tick.Scheduled
		}
	}
	if want := int(last.Sub(first)/time.Second) + 1; len(seen) != want {
		t.Errorf("%d ticks from %s to %s, want %d: one was missed", len(seen), first, last, want)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
