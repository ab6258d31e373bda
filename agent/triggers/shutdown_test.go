package triggers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/internal/testing/testenv"
	"github.com/wispfn/wisp/internal/testing/testwait"
)

// TestRunWaitsForInvocations: an invocation still running when Run's
// context ends and the drain times out has its context cancelled, and Run
// returns only after it returned.
func TestRunWaitsForInvocations(t *testing.T) {
	testenv.Mosquitto(t)
	topic := "wisp/test/shutdown/" + testenv.Unique()
	var started, returned atomic.Bool
	rec := &recorder{}
	invoke := func(ctx context.Context, m Message) error {
		if string(m.Payload) != `{"block":true}` {
			return rec.invoke(ctx, m)
		}
		started.Store(true)
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // cleaning up takes a while
		returned.Store(true)
		return ctx.Err()
	}
	l := start(t, Config{Invoke: invoke, DrainTimeout: 50 * time.Millisecond}, Binding{"mod", "fn", topic})
	pub := publisher(t)
	waitSubscribed(t, pub, rec, topic)
	publish(t, pub, topic, `{"block":true}`)
	testwait.For(t, 10*time.Second, "the blocking invocation to start", started.Load)
	l.stop()
	if !returned.Load() {
		t.Fatal("Run returned while an invocation it started was still running")
	}
}
