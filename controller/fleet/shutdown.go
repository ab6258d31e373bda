package fleet

import "time"

// Graceful shutdown, for rolling restarts of the controllers (issue 15,
// point 4). When Serve's context ends the fleet drains, in this order:
//
//  1. it stops accepting agents (the QUIC listener closes; a session
//     authenticated meanwhile is closed with CloseShutdown at once) and
//     the Dispatcher refuses new invocations with invoke.ErrNoWorker
//     (nothing ran: a client retries on another controller);
//  2. it waits for the invocations it runs on agents to return, at most
//     Config.DrainTimeout: every call it accepted gets its answer, while
//     the sessions keep recording outbox batches;
//  3. it closes every session with protocol.CloseShutdown, which tells the
//     agents that this controller drained and is going away: they come
//     back after a short random delay, as from no error (agent/link).
//
// The REST API stops before (controller/server): it no longer takes
// requests, and those in flight wait here for their agents' answers.

// drain marks the fleet shutting down and waits for the invocations in
// flight on its sessions to return, at most Config.DrainTimeout.
func (f *Fleet) drain() {
	f.shutting.Store(true)
	deadline := time.Now().Add(f.cfg.DrainTimeout)
	n := f.inFlight()
	if n > 0 {
		f.log.Info("waiting for the invocations running on agents before closing their sessions", "in_flight", n, "timeout", f.cfg.DrainTimeout)
	}
	for ; n > 0; n = f.inFlight() {
		if time.Now().After(deadline) {
			f.log.Warn("closing agent sessions with invocations still running", "in_flight", n)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inFlight counts the invocations this controller has running on agents.
func (f *Fleet) inFlight() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var n int64
	for _, s := range f.sessions {
		n += s.inflight.Load()
	}
	return n
}
