package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// The fleet's quarantine: code that no agent may run.
//
//   - Quarantined digests are the store's (an agent reported that it died
//     while compiling or running them). The fleet keeps a copy in memory for
//     the dispatcher, re-reads it whenever an agent connects and every
//     QuarantineRefresh (other controllers on the same database record
//     crashes and releases too), and sends every agent the whole set after
//     each change.
//   - Held digests are in memory only: an agent went silent while running
//     them (no Started and no Pong, or its connection timed out), so it may
//     have died of them and be restarting. Until it reconnects (and reports
//     the crash, or not) or CrashHold passes, their invocations are refused
//     too, so that a poison pill cannot take the next agent down in the
//     meantime. A partitioned agent looks the same as a dead one: its
//     digests in flight are held for up to CrashHold though nothing is wrong
//     with them (docs/delivery.md weighs this).

// quarantineState is the in-memory part. The dispatcher reads the maps
// through their pointers without locking; writers replace them whole under
// mu.
type quarantineState struct {
	mu      sync.Mutex
	known   atomic.Pointer[map[string]store.Quarantine] // the store's, as last read
	holds   atomic.Pointer[map[string]hold]
	refresh sync.Mutex // one store read at a time
	// read is when the last successful store read began (under refresh).
	read time.Time
}

func (q *quarantineState) init() {
	q.known.Store(&map[string]store.Quarantine{})
	q.holds.Store(&map[string]hold{})
}

// hold is a digest held after agents were lost running it.
type hold struct {
	agents map[string]string // id -> name
	since  time.Time
	until  time.Time
}

// refused returns the error for an invocation of digest, or nil if it may
// run.
func (f *Fleet) refused(digest string) error {
	q, quarantined := (*f.quarantine.known.Load())[digest]
	h, held := (*f.quarantine.holds.Load())[digest]
	switch {
	case quarantined:
		return invoke.Quarantined(quarantineDetail(q, f.agentName(q.Agent)))
	case held && time.Now().Before(h.until):
		return invoke.Quarantined(fmt.Sprintf("The function's code is held: agent %s was lost while running it and may have died of it. "+
			"The hold ends when the agent reconnects or at %s; retry then", names(h.agents), h.until.UTC().Format(time.RFC3339)))
	}
	return nil
}

func quarantineDetail(q store.Quarantine, agent string) string {
	who := "an agent"
	if agent != "" {
		who = "agent " + agent
	}
	return fmt.Sprintf("The function's code is quarantined: %s died with it (%s, at %s). "+
		"Retrying will not help until an operator releases it (wisp quarantine release %s)",
		who, q.Reason, q.Since.Format(time.RFC3339), q.Digest)
}

func names(agents map[string]string) string {
	var out []string
	for id, name := range agents {
		if name == "" {
			name = id
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// agentName is the name of a connected or known agent, or its id.
func (f *Fleet) agentName(id string) string {
	if id == "" {
		return ""
	}
	f.mu.RLock()
	s := f.sessions[id]
	f.mu.RUnlock()
	if s == nil {
		return id
	}
	return s.hello.Name
}

// holdDigest holds digest after s went silent running it: nothing
// dispatches it until s reconnects or CrashHold passes. It does nothing
// when holds are disabled, when the digest is quarantined already, or
// when s is no longer the agent's current session (it reconnected, and
// said whether it crashed).
func (f *Fleet) holdDigest(digest string, s *Session, why string) {
	if f.cfg.CrashHold <= 0 {
		return
	}
	// f.mu is held throughout, so that a reconnect (which releases the
	// agent's holds under f.mu) comes wholly before or after this.
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.sessions[s.ID] != s {
		return
	}
	now := time.Now()
	f.quarantine.mu.Lock()
	if _, ok := (*f.quarantine.known.Load())[digest]; ok {
		f.quarantine.mu.Unlock()
		return
	}
	holds := maps.Clone(*f.quarantine.holds.Load())
	h, ok := holds[digest]
	if !ok || now.After(h.until) {
		h = hold{agents: map[string]string{}, since: now}
	} else {
		h.agents = maps.Clone(h.agents)
	}
	h.agents[s.ID] = s.hello.Name
	h.until = now.Add(f.cfg.CrashHold)
	holds[digest] = h
	f.quarantine.holds.Store(&holds)
	f.quarantine.mu.Unlock()
	f.cfg.Metrics.quarantine(f.quarantineCounts())
	f.log.Warn("holding code: an agent was lost while running it", "digest", digest, "agent", s.ID, "name", s.hello.Name,
		"why", why, "until", h.until)
}

// releaseHolds drops agentID from every hold, now that it reconnected: it
// reported the crashes it had (now quarantined), so the rest of what it
// was running did not kill it. f.mu must be held (for writing): see
// holdDigest.
func (f *Fleet) releaseHolds(agentID string) {
	f.quarantine.mu.Lock()
	var released []string
	holds := maps.Clone(*f.quarantine.holds.Load())
	for d, h := range holds {
		if _, ok := h.agents[agentID]; !ok {
			continue
		}
		h.agents = maps.Clone(h.agents)
		delete(h.agents, agentID)
		if len(h.agents) == 0 {
			delete(holds, d)
			released = append(released, d)
			continue
		}
		holds[d] = h
	}
	f.quarantine.holds.Store(&holds)
	f.quarantine.mu.Unlock()
	if len(released) > 0 {
		f.cfg.Metrics.quarantine(f.quarantineCounts())
		f.log.Info("released held code: the agent came back without reporting a crash", "agent", agentID, "digests", released)
	}
}

// dropExpiredHolds forgets holds past their end.
func (f *Fleet) dropExpiredHolds(now time.Time) {
	f.quarantine.mu.Lock()
	var expired []string
	holds := *f.quarantine.holds.Load()
	for d, h := range holds {
		if now.After(h.until) {
			expired = append(expired, d)
		}
	}
	if len(expired) > 0 {
		holds = maps.Clone(holds)
		for _, d := range expired {
			delete(holds, d)
		}
		f.quarantine.holds.Store(&holds)
	}
	f.quarantine.mu.Unlock()
	if len(expired) > 0 {
		f.cfg.Metrics.quarantine(f.quarantineCounts())
		f.log.Warn("hold expired before the agent came back; the code may run again", "digests", expired)
	}
}

func (f *Fleet) quarantineCounts() (quarantined, held int) {
	return len(*f.quarantine.known.Load()), len(*f.quarantine.holds.Load())
}

// maxCrashReports bounds the crash reports one Hello may make the
// controller store: a crash marks at most a few hundred digests (the
// agent's crash-marker slots), and a Hello is at most 1 MiB anyway.
const maxCrashReports = 1024

// recordCrashes stores the crashes an agent reported in its Hello and
// reports whether every one is stored (the agent may then stop reporting
// them). Entries whose digest is not a digest are dropped, and so is
// everything past maxCrashReports: the agent is authenticated, not trusted.
func (f *Fleet) recordCrashes(ctx context.Context, agentID, name string, crashes []protocol.QuarantineEntry) bool {
	ok := true
	if len(crashes) > maxCrashReports {
		f.log.Warn("ignoring crash reports past the limit", "agent", agentID, "reports", len(crashes), "limit", maxCrashReports)
		crashes = crashes[:maxCrashReports]
	}
	for _, c := range crashes {
		if !protocol.IsDigest(c.Digest) {
			f.log.Warn("ignoring a crash report with a malformed digest", "agent", agentID, "digest", fmt.Sprintf("%.80q", c.Digest))
			continue
		}
		q := store.Quarantine{Digest: c.Digest, Reason: c.Reason, Agent: agentID, Since: time.UnixMilli(int64(c.SinceUnixMS))}
		created, err := f.cfg.Store.QuarantineDigest(ctx, q)
		if err != nil {
			f.log.Error("cannot record a crash report; the agent will send it again", "agent", agentID, "digest", c.Digest, "err", err)
			ok = false
			continue
		}
		if created {
			f.log.Warn("code quarantined: an agent died while running it", "agent", agentID, "name", name, "digest", c.Digest,
				"reason", c.Reason, "since", q.Since)
		}
	}
	return ok
}

// refreshQuarantine re-reads the store's quarantine; when it changed it
// tells every connected agent. It reports whether it changed.
//
// A read that began after the call did is as good as its own: callers
// waiting while one runs share the next (every agent admission asks for
// one, and a thousand reconnecting agents must not queue a thousand store
// reads one after another). Such a caller reports no change.
func (f *Fleet) refreshQuarantine(ctx context.Context) (bool, error) {
	asked := time.Now()
	f.quarantine.refresh.Lock()
	defer f.quarantine.refresh.Unlock()
	if f.quarantine.read.After(asked) {
		return false, nil
	}
	began := time.Now()
	qs, err := f.cfg.Store.ListQuarantine(ctx)
	if err != nil {
		return false, err
	}
	f.quarantine.read = began
	fresh := make(map[string]store.Quarantine, len(qs))
	for _, q := range qs {
		fresh[q.Digest] = q
	}
	f.quarantine.mu.Lock()
	changed := !maps.EqualFunc(fresh, *f.quarantine.known.Load(), func(a, b store.Quarantine) bool { return a.Digest == b.Digest && a.Since.Equal(b.Since) })
	f.quarantine.known.Store(&fresh)
	if changed {
		// A quarantined digest needs no hold.
		holds := maps.Clone(*f.quarantine.holds.Load())
		for d := range fresh {
			delete(holds, d)
		}
		f.quarantine.holds.Store(&holds)
	}
	f.quarantine.mu.Unlock()
	if changed {
		f.cfg.Metrics.quarantine(f.quarantineCounts())
		for _, s := range f.Sessions() {
			f.sendQuarantine(s)
		}
	}
	return changed, nil
}

// watchQuarantine re-reads the quarantine every QuarantineRefresh and
// drops expired holds, until ctx is done.
func (f *Fleet) watchQuarantine(ctx context.Context) {
	t := time.NewTicker(f.cfg.QuarantineRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f.dropExpiredHolds(now)
			if _, err := f.refreshQuarantine(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("reading the quarantine", "err", err)
			}
		}
	}
}

// quarantineMsg is the Quarantine message for the current set.
func (f *Fleet) quarantineMsg() *protocol.Quarantine {
	known := *f.quarantine.known.Load()
	m := &protocol.Quarantine{Entries: make([]protocol.QuarantineEntry, 0, len(known))}
	for _, d := range slices.Sorted(maps.Keys(known)) {
		q := known[d]
		m.Entries = append(m.Entries, protocol.QuarantineEntry{Digest: d, Reason: q.Reason, SinceUnixMS: uint64(q.Since.UnixMilli())})
	}
	return m
}

// sendQuarantine sends s the whole quarantine, if it speaks version 2.
func (f *Fleet) sendQuarantine(s *Session) {
	if s.version < 2 || !s.connected.Load() {
		return
	}
	m := f.quarantineMsg()
	s.ctrlMu.Lock()
	err := protocol.WriteMsg(s.ctrl, m)
	s.ctrlMu.Unlock()
	if err != nil {
		f.log.Warn("sending the quarantine", "agent", s.ID, "err", err)
	}
}

// ListQuarantine implements the API's quarantine routes: the store's quarantine (read
// afresh) and the holds.
func (f *Fleet) ListQuarantine(ctx context.Context) ([]QuarantineInfo, error) {
	if _, err := f.refreshQuarantine(ctx); err != nil {
		return nil, err
	}
	known, holds := *f.quarantine.known.Load(), *f.quarantine.holds.Load()
	var out []QuarantineInfo
	for d, q := range known {
		out = append(out, QuarantineInfo{Digest: d, State: QuarantineStateQuarantined, Reason: q.Reason,
			Agent: q.Agent, AgentName: f.agentName(q.Agent), Since: q.Since})
	}
	now := time.Now()
	for d, h := range holds {
		if now.After(h.until) {
			continue
		}
		until := h.until.UTC()
		ids := slices.Sorted(maps.Keys(h.agents))
		out = append(out, QuarantineInfo{Digest: d, State: QuarantineStateHeld,
			Reason: "agent " + names(h.agents) + " was lost while running it",
			Agent:  strings.Join(ids, ","), AgentName: names(h.agents), Since: h.since.UTC(), Until: &until})
	}
	slices.SortFunc(out, func(a, b QuarantineInfo) int { return strings.Compare(a.Digest, b.Digest) })
	return out, nil
}

// ReleaseQuarantine implements the API's quarantine routes.
func (f *Fleet) ReleaseQuarantine(ctx context.Context, digest string) error {
	f.quarantine.mu.Lock()
	_, held := (*f.quarantine.holds.Load())[digest]
	if held {
		holds := maps.Clone(*f.quarantine.holds.Load())
		delete(holds, digest)
		f.quarantine.holds.Store(&holds)
	}
	f.quarantine.mu.Unlock()
	_, err := f.cfg.Store.ReleaseDigest(ctx, digest)
	if errors.Is(err, store.ErrNotFound) && held {
		err = nil
	}
	if err != nil {
		return err
	}
	if _, err := f.refreshQuarantine(ctx); err != nil {
		f.log.Warn("reading the quarantine after a release; agents learn it at the next refresh", "err", err)
	}
	f.cfg.Metrics.quarantine(f.quarantineCounts())
	return nil
}

// lostSilently reports whether err (a read error on an invocation stream)
// ended the connection the way a dead or cut-off agent ends it: an idle
// timeout, or missed heartbeats. An agent that closed it, a reconnect that
// superseded it and a controller shutdown do not count.
func lostSilently(err error) bool {
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return true
	}
	var app *quic.ApplicationError
	return errors.As(err, &app) && !app.Remote && protocol.CloseCode(app.ErrorCode) == protocol.CloseProtocolViolation
}

// closedAfterDrain reports whether err says that the agent closed the
// connection with CloseShutdown, which it does only after answering every
// invocation stream it accepted.
func closedAfterDrain(err error) bool {
	var app *quic.ApplicationError
	return errors.As(err, &app) && app.Remote && protocol.CloseCode(app.ErrorCode) == protocol.CloseShutdown
}

// QuarantineInfo is one digest of GET /v1/admin/quarantine.
type QuarantineInfo struct {
	Digest string `json:"digest"`
	// State is "quarantined" (until an operator releases it) or "held"
	// (until the lost agent reconnects, or Until).
	State  string `json:"state"`
	Reason string `json:"reason"`
	// Agent is the id of the agent that died (or was lost) running it, and
	// AgentName its name when the controller knows it.
	Agent     string     `json:"agent"`
	AgentName string     `json:"agent_name"`
	Since     time.Time  `json:"since"`
	Until     *time.Time `json:"until,omitempty"`
	// Functions are the functions ("module/name") whose code it is; the API
	// fills them in.
	Functions []string `json:"functions"`
}

// Quarantine states.
const (
	QuarantineStateQuarantined = "quarantined"
	QuarantineStateHeld        = "held"
)
