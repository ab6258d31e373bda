//go:build wispfault && unix

package fault

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	killMarker   []byte
	startedDelay time.Duration
}

var load = sync.OnceValue(func() config {
	var c config
	for item := range strings.SplitSeq(os.Getenv("WISP_FAULT"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(item), "=")
		switch k {
		case "":
		case "kill-on-input":
			c.killMarker = []byte(v)
		case "delay-started":
			d, err := time.ParseDuration(v)
			if err != nil {
				panic(fmt.Sprintf("WISP_FAULT delay-started=%q: %v", v, err))
			}
			c.startedDelay = d
		default:
			panic(fmt.Sprintf("WISP_FAULT: unknown fault %q", k))
		}
	}
	return c
})

type killKey struct{}

// WithInput marks ctx for a kill when the input holds the kill marker.
func WithInput(ctx context.Context, input []byte) context.Context {
	if m := load().killMarker; len(m) > 0 && bytes.Contains(input, m) {
		return context.WithValue(ctx, killKey{}, true)
	}
	return ctx
}

// AtRun kills the process with SIGKILL if ctx was marked by WithInput.
func AtRun(ctx context.Context) {
	if kill, _ := ctx.Value(killKey{}).(bool); kill {
		fmt.Fprintln(os.Stderr, "fault: kill-on-input: SIGKILL")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal takes the process before anything else runs
	}
}

// StartedDelay is the delay-started fault's duration.
func StartedDelay() time.Duration { return load().startedDelay }
