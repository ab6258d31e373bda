package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/store"
)

// testPing: a store is a store.Pinger (the controller's /readyz asks it),
// answering nil while open and an error once closed.
func testPing(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	p, ok := s.(store.Pinger)
	if !ok {
		t.Fatalf("%T is no store.Pinger: the controller's /readyz could not check it", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(ctx); err == nil {
		t.Error("Ping of a closed store answered nil")
	}
}
