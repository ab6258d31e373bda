package activations

import "sync"

// Bell tells any number of waiters that activations were recorded: each
// Recorded channel is closed at the next Ring. It wakes the REST API's
// follow streams early; they read the store themselves, so a missed ring
// costs only a poll interval. The zero Bell is ready to use.
type Bell struct {
	mu sync.Mutex
	ch chan struct{}
}

// Recorded returns a channel closed at the next Ring.
func (b *Bell) Recorded() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Ring wakes every waiter of the channels Recorded returned so far.
func (b *Bell) Ring() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
