package tasks

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestStopWaitsAndRefuses(t *testing.T) {
	type key struct{}
	g := New(context.WithValue(context.Background(), key{}, "v"))
	var finished atomic.Int32
	started := make(chan struct{})
	ok := g.Go(func(ctx context.Context) {
		if ctx.Value(key{}) != "v" {
			t.Error("the group's context lost the parent's values")
		}
		close(started)
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // still running after the cancel
		finished.Add(1)
	})
	if !ok {
		t.Fatal("Go refused before Stop")
	}
	done, ok := g.Enter()
	if !ok {
		t.Fatal("Enter refused before Stop")
	}
	go func() {
		time.Sleep(80 * time.Millisecond)
		finished.Add(1)
		done()
	}()
	<-started
	g.Stop()
	if n := finished.Load(); n != 2 {
		t.Fatalf("Stop returned with %d of 2 goroutines finished", n)
	}
	if g.Go(func(context.Context) { t.Error("ran after Stop") }) {
		t.Error("Go accepted after Stop")
	}
	if _, ok := g.Enter(); ok {
		t.Error("Enter accepted after Stop")
	}
	if g.Context().Err() == nil {
		t.Error("the context is not done after Stop")
	}
	g.Stop() // twice is fine
}

func TestParentCancelDoesNotStop(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	g := New(parent)
	cancel()
	if g.Context().Err() != nil {
		t.Fatal("cancelling the parent ended the group's context; only Stop may")
	}
	g.Stop()
}
