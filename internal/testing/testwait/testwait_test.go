package testwait

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeT records a Fatalf instead of stopping the test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = format
	for _, a := range args {
		if s, ok := a.(interface{ Error() string }); ok {
			f.failed += " " + s.Error()
		} else if s, ok := a.(string); ok {
			f.failed += " " + s
		}
	}
	panic(f)
}

func run(f func(t *fakeT)) (ft *fakeT) {
	ft = &fakeT{}
	defer func() {
		if r := recover(); r != nil && r != ft {
			panic(r)
		}
	}()
	f(ft)
	return ft
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	ft := run(func(ft *fakeT) {
		Until(ft, time.Minute, func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	})
	if ft.failed != "" || n != 3 {
		t.Fatalf("failed %q after %d calls", ft.failed, n)
	}
}

func TestUntilFailsWithTheLastError(t *testing.T) {
	ft := run(func(ft *fakeT) {
		Until(ft, 30*time.Millisecond, func() error { return errors.New("still 4 queued") })
	})
	if !strings.Contains(ft.failed, "still 4 queued") {
		t.Fatalf("failure %q does not carry the condition's error", ft.failed)
	}
}

func TestForFailsSayingWhat(t *testing.T) {
	ft := run(func(ft *fakeT) {
		For(ft, 30*time.Millisecond, "the agent to reconnect", func() bool { return false })
	})
	if !strings.Contains(ft.failed, "the agent to reconnect") {
		t.Fatalf("failure %q does not say what it waited for", ft.failed)
	}
	ok := run(func(ft *fakeT) { For(ft, time.Minute, "true", func() bool { return true }) })
	if ok.failed != "" {
		t.Fatalf("a true condition failed: %q", ok.failed)
	}
}
