package fleet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/controller/scheduler"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

// OutboxRecorder records activations agents ran on their own.
type OutboxRecorder interface {
	Outbox(ctx context.Context, agentID string, entries []protocol.OutboxEntry) error
}

// Assignment rule (Wisp's decision): a function is assigned to every agent
// (it holds the code and serves the function on its own: local invoke API,
// edge-local triggers) unless its metadata names a tag t. Then it goes to
// the agents labelled tag=t and to the agents the APP scripts name for t
// (every block's workers; "*" means every agent). A tag that neither a
// label nor a script mentions assigns the function to every agent, so a tag
// used only for scheduling never strands a function. The controller still
// schedules any function on any agent; assignment decides what works
// offline. A function whose stored settings are unreadable is assigned to
// no agent (fnspec's "Bad stored data": it never runs).
func assigned(s *Session, fn store.Function, scripts []scheduler.Script, labelled map[string]bool) bool {
	if fn.Unreadable != nil {
		return false
	}
	meta := fn.Spec.Metadata
	if meta.Tag == "" {
		return true
	}
	named, mentioned := false, labelled[meta.Tag]
	for _, sc := range scripts {
		tag, ok := sc.Tag(meta.Tag)
		if !ok {
			continue
		}
		mentioned = true
		for _, b := range tag.Blocks {
			if b.AllWorkers || slices.ContainsFunc(b.Workers, func(w string) bool { return scheduler.IsWorker(w, s.ID, s.hello.Name, s.Labels()) }) {
				named = true
			}
		}
	}
	if !mentioned {
		return true
	}
	return named || slices.Contains(s.Labels(), "tag="+meta.Tag)
}

// Tags some agent is labelled with (assigned's labelled) are the
// cluster's: the "tag=" labels of every agent in the store, connected or
// not, with the operator's labels applied, so that every controller
// computes the same desired set for an agent whichever agents it has
// sessions with, and an agent going offline does not move functions on
// the others. The fleet keeps each agent's tags in memory, read with the
// agents (refreshAgents, RefreshAgents) and at its hello; the union's
// change resyncs every desired set.
type agentTags struct {
	mu     sync.Mutex
	loaded bool
	byID   map[string][]string
	// loadMu makes the first read of every agent one read.
	loadMu sync.Mutex
}

// tagsOf is the tag values of labels ("tag=t" gives t).
func tagsOf(labels []string) []string {
	var out []string
	for _, l := range labels {
		if t, ok := strings.CutPrefix(l, "tag="); ok {
			out = append(out, t)
		}
	}
	return out
}

// union is every tag of m; t.mu is held.
func (t *agentTags) union() map[string]bool {
	u := map[string]bool{}
	for _, ts := range t.byID {
		for _, tag := range ts {
			u[tag] = true
		}
	}
	return u
}

// setAll replaces every agent's tags with those of as and reports
// whether the union changed.
func (t *agentTags) setAll(as []store.Agent) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	before := t.union()
	t.byID = make(map[string][]string, len(as))
	for _, a := range as {
		if ts := tagsOf(effectiveLabels(a.Labels, a.Control.Labels)); len(ts) > 0 {
			t.byID[a.ID] = ts
		}
	}
	t.loaded = true
	return !maps.Equal(before, t.union())
}

// set replaces one agent's tags from its effective labels (nil: the
// agent is gone) and reports whether the union changed. Before the
// first setAll it only records them.
func (t *agentTags) set(id string, labels []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = map[string][]string{}
	}
	ts := tagsOf(labels)
	if slices.Equal(ts, t.byID[id]) {
		return false
	}
	before := t.union()
	if len(ts) == 0 {
		delete(t.byID, id)
	} else {
		t.byID[id] = ts
	}
	return t.loaded && !maps.Equal(before, t.union())
}

// labelledTags is the cluster's set of tags some agent is labelled with,
// reading every agent the first time (once, however many sessions ask at
// once: agents reconnecting to a restarted controller).
func (f *Fleet) labelledTags(ctx context.Context) map[string]bool {
	f.tags.mu.Lock()
	loaded := f.tags.loaded
	f.tags.mu.Unlock()
	if !loaded {
		f.tags.loadMu.Lock()
		f.tags.mu.Lock()
		loaded = f.tags.loaded
		f.tags.mu.Unlock()
		if !loaded {
			if as, err := f.cfg.Store.ListAgents(ctx); err == nil {
				f.tags.setAll(as)
			} else {
				f.log.Warn("listing agents for assignment", "err", err)
			}
		}
		f.tags.loadMu.Unlock()
	}
	f.tags.mu.Lock()
	defer f.tags.mu.Unlock()
	return f.tags.union()
}

// scripts are the parsed APP scripts (one that does not parse names no
// agent), and a hash of every script's name and source: what decides
// assignment besides the tags and labels.
func (f *Fleet) scripts(ctx context.Context) ([]scheduler.Script, [sha256.Size]byte) {
	var scripts []scheduler.Script
	all, err := f.cfg.Store.ListScripts(ctx)
	if err != nil {
		f.log.Warn("listing APP scripts for assignment", "err", err)
		return nil, [sha256.Size]byte{}
	}
	h := sha256.New()
	for _, sc := range all {
		fmt.Fprintf(h, "%d:%s%d:%s", len(sc.Name), sc.Name, len(sc.Source), sc.Source)
		if parsed, err := scheduler.ParseAPP(sc.Source); err == nil {
			scripts = append(scripts, parsed)
		}
	}
	return scripts, [sha256.Size]byte(h.Sum(nil))
}

// MaxKeepDigests is how many earlier versions' code an agent is asked to
// keep per function (DesiredFunction.KeepDigests): the code of the newest
// kept versions before the current one, distinct and not the current
// digest. A rollback to one of them needs no transfer; older kept versions
// still roll back, with a push or a fetch. The code is not pushed for
// this: an agent keeps what it held.
const MaxKeepDigests = 2

// KeptDigestLister is the store's list of the code each function's kept
// versions use. A Store without it (a test double) gives no KeepDigests.
type KeptDigestLister interface {
	KeptDigests(ctx context.Context, n int) (map[string][]string, error)
}

// keptDigests is every function's KeepDigests, keyed "module/name": one
// store read per desired-set sync, whatever the number of functions.
func (f *Fleet) keptDigests(ctx context.Context) map[string][]string {
	kl, ok := f.cfg.Store.(KeptDigestLister)
	if !ok {
		return nil
	}
	kept, err := kl.KeptDigests(ctx, MaxKeepDigests)
	if err != nil {
		f.log.Warn("listing kept versions for the desired set", "err", err)
		return nil
	}
	return kept
}

// maxDesiredSetBytes is the largest desired set sent: agent/link's
// maxControlFrame (1 MiB). MERGE: keep the two equal.
const maxDesiredSetBytes = 1 << 20

// desiredInputs is what every session's desired set is made of, read
// once for a sync of all sessions (not once per session: with thousands
// of agents that would be thousands of store reads and secret openings).
// Reads take turns (Fleet.catalogMu), so a later gen is a later read and
// a later catalog generation.
type desiredInputs struct {
	// gen orders snapshots: taken before the store is read, so a higher
	// gen read the store later. A session never gets a set made from a
	// lower gen than one it already got.
	gen uint64
	fns []store.Function
	// entries are fns's desired forms (nil where a test made the inputs
	// without the catalog); cat is the catalog generation they are at,
	// log the catalog's changes up to it (desired_catalog.go).
	entries  []*desiredEntry
	cat      uint64
	log      []desiredChange
	catalog  *desiredCatalog
	scripts  []scheduler.Script
	labelled map[string]bool
	// assign hashes the scripts and the labelled tags: with an agent's
	// labels, what assignment depends on (assignFor).
	assign [sha256.Size]byte
	// gone caches, for a digest an agent holds that no function uses,
	// whether the store still has its code (goneMu).
	goneMu sync.Mutex
	gone   map[string]bool
}

// assignFor names the assignment inputs of s's set: a set made with other
// ones may differ in any function, so it is followed by a full set.
func (in *desiredInputs) assignFor(s *Session) [sha256.Size]byte {
	h := sha256.New()
	h.Write(in.assign[:])
	for _, l := range s.Labels() {
		fmt.Fprintf(h, "%d:%s", len(l), l)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// codeGone reports whether the store no longer holds d's code (no
// function and no kept version uses it: it was collected), asking it at
// most once per sync. A store that cannot say (no store.CodeChecker), or
// a read that fails, says no.
func (in *desiredInputs) codeGone(ctx context.Context, st Store, d string) bool {
	if in.catalog == nil || in.catalog.uses(d) {
		return false
	}
	cc, ok := st.(store.CodeChecker)
	if !ok {
		return false
	}
	in.goneMu.Lock()
	defer in.goneMu.Unlock()
	if g, ok := in.gone[d]; ok {
		return g
	}
	has, err := cc.HasCode(ctx, d)
	in.gone[d] = err == nil && !has
	return in.gone[d]
}

// desiredInputs reads what desired sets are made of and brings the
// catalog to it.
func (f *Fleet) desiredInputs(ctx context.Context) (*desiredInputs, error) {
	f.catalogMu.Lock()
	defer f.catalogMu.Unlock()
	in := &desiredInputs{gen: f.desiredGen.Add(1), catalog: &f.catalog, gone: map[string]bool{}}
	fns, err := f.cfg.Functions.ListFunctions(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: list functions: %w", err)
	}
	in.fns = fns
	in.scripts, in.assign = f.scripts(ctx)
	in.labelled = f.labelledTags(ctx)
	h := sha256.New()
	h.Write(in.assign[:])
	for _, t := range slices.Sorted(maps.Keys(in.labelled)) {
		fmt.Fprintf(h, "%d:%s", len(t), t)
	}
	in.assign = [sha256.Size]byte(h.Sum(nil))
	in.entries = f.refreshCatalog(ctx, &f.catalog, fns)
	in.cat, in.log = f.catalog.gen, f.catalog.log
	return in, nil
}

// syncDesired sends a session what changed in its desired set — a delta,
// or the full set (desired_catalog.go says when) — unless nothing did (a
// resync that changes nothing for an agent sends it nothing: every
// controller resyncs on every change it learns of, its own included), and
// pushes the code the agent lacks among the functions sent, and any whose
// push failed before (an agent of another controller may lack code this
// one never pushed).
//
// An agent holding code the store collected (a function deleted through
// another controller, whose Drop went only to that controller's agents)
// is told to drop it; this is looked at when its set changed.
func (f *Fleet) syncDesired(ctx context.Context, s *Session, in *desiredInputs) {
	missing, sent := f.sendDesired(s, in)
	if len(missing) > 0 {
		f.pushMissing(ctx, s, missing)
	}
	if !sent {
		return
	}
	var gone []string
	for h := range *s.digests.Load() {
		if d := h.Value(); in.codeGone(ctx, f.cfg.Store, d) {
			gone = append(gone, d)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		f.log.Info("telling an agent to drop code no function uses any more", "agent", s.ID, "digests", gone)
		s.drop(gone)
	}
}

// sendDesired sends s the change of its set made of in: a delta when it
// can, else the full set. It returns the functions whose code the agent
// lacks (of those sent, and those whose push failed), and whether
// something was sent. Sends to one session are ordered; pushes are not
// held up by them, nor they by pushes.
func (f *Fleet) sendDesired(s *Session, in *desiredInputs) (missing []store.Function, sent bool) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if in.gen < s.desiredGen || (in.entries != nil && in.cat < s.sentCat) {
		return nil, false // a set made from a later read was sent already
	}
	s.desiredGen = in.gen
	for _, fn := range s.unpushed {
		if !s.HasDigest(fn.Digest) {
			missing = append(missing, fn)
		}
	}
	clear(s.unpushed)
	assign := in.assignFor(s)
	if s.desiredSent && s.sentAssign == assign && s.hello.ProtocolVersion >= 5 && in.entries != nil {
		if changes, ok := changesSince(in.log, s.sentCat, in.cat); ok {
			m, sent, ok := f.sendDelta(s, in, changes)
			if ok {
				return append(missing, m...), sent
			}
		}
	}
	m, sent := f.sendFull(s, in, assign)
	return append(missing, m...), sent
}

// sendDelta sends s the changes of its set, and reports false (nothing
// sent) when they are better sent as a full set.
func (f *Fleet) sendDelta(s *Session, in *desiredInputs, changes []desiredChange) (missing []store.Function, sent, ok bool) {
	type span struct{ old, new *desiredEntry }
	spans := map[string]*span{}
	var order []string
	for _, c := range changes {
		key := cmp.Or(c.old, c.new).key
		if sp := spans[key]; sp != nil {
			sp.new = c.new
			continue
		}
		spans[key] = &span{c.old, c.new}
		order = append(order, key)
	}
	delta := &protocol.DesiredDelta{Base: s.sentDigest}
	sum := s.sentDigest
	for _, key := range order {
		sp := spans[key]
		was := sp.old != nil && assigned(s, sp.old.fn, in.scripts, in.labelled)
		is := sp.new != nil && assigned(s, sp.new.fn, in.scripts, in.labelled)
		if was {
			sum = addDigest(sum, sp.old.hash, true)
		}
		switch {
		case is && sp.new.unreadable:
			// Secrets travel only in this QUIC session. A set without
			// the values would strip them from the agent: nothing is
			// sent then, and the agent keeps its set.
			f.log.Warn("the desired set is not sent: a function's secrets cannot be read now", "agent", s.ID, "module", sp.new.fn.Module, "function", sp.new.fn.Name)
			return nil, false, true
		case is:
			sum = addDigest(sum, sp.new.hash, false)
			if !was || sp.old.hash != sp.new.hash {
				delta.Upserts = append(delta.Upserts, sp.new.df)
				if !s.HasDigest(sp.new.fn.Digest) {
					missing = append(missing, sp.new.fn)
				}
			}
		case was:
			delta.Removes = append(delta.Removes, protocol.FunctionName{Module: sp.old.df.Module, Name: sp.old.df.Name})
		}
	}
	if len(delta.Upserts)+len(delta.Removes) == 0 {
		s.sentCat = in.cat // nothing of it is this agent's
		return missing, false, true
	}
	if len(delta.Upserts)+len(delta.Removes) > protocol.MaxDeltaFunctions {
		return nil, false, false
	}
	delta.Result = sum
	payload := delta.Append(nil)
	if len(payload) > maxDesiredSetBytes {
		return nil, false, false
	}
	if !f.writeControl(s, delta.Type(), payload) {
		return nil, false, true
	}
	s.sentCat, s.sentDigest = in.cat, sum
	f.cfg.Metrics.deltaSent()
	return missing, true, true
}

// sendFull sends s its full set made of in unless it is the one sent
// last.
func (f *Fleet) sendFull(s *Session, in *desiredInputs, assign [sha256.Size]byte) (missing []store.Function, sent bool) {
	entries := in.entries
	if entries == nil { // inputs made without the catalog (tests)
		for _, fn := range in.fns {
			entries = append(entries, f.entryOf(context.Background(), fn, nil))
		}
	}
	set := &protocol.DesiredSet{}
	sum := setDigestBase
	for _, e := range entries {
		if !assigned(s, e.fn, in.scripts, in.labelled) {
			continue
		}
		if e.unreadable {
			f.log.Warn("the desired set is not sent: a function's secrets cannot be read now", "agent", s.ID, "module", e.fn.Module, "function", e.fn.Name)
			return nil, false
		}
		set.Functions = append(set.Functions, e.df)
		sum = addDigest(sum, e.hash, false)
		if !s.HasDigest(e.fn.Digest) {
			missing = append(missing, e.fn)
		}
	}
	set.Digest = sum
	if !s.desiredSent || sum != s.sentDigest {
		// Agents read control frames of at most 1 MiB (agent/link's
		// maxControlFrame); secrets (16 KiB each) make a larger set
		// possible. One over it is not sent: the agent keeps its last set.
		payload := set.Append(nil)
		if n := len(payload); n > maxDesiredSetBytes {
			f.log.Error("the desired set is over the agents' control-frame bound; not sent", "agent", s.ID, "functions", len(set.Functions), "bytes", n, "limit", maxDesiredSetBytes)
			return nil, false
		}
		if !f.writeControl(s, set.Type(), payload) {
			return nil, false
		}
		f.cfg.Metrics.desiredSent()
		sent = true
	}
	s.desiredSent, s.sentDigest, s.sentCat, s.sentAssign = true, sum, in.cat, assign
	return missing, sent
}

// writeControl writes one frame on s's control stream.
func (f *Fleet) writeControl(s *Session, t protocol.FrameType, payload []byte) bool {
	s.ctrlMu.Lock()
	err := protocol.WriteFrame(s.ctrl, protocol.Frame{Type: t, Payload: payload})
	s.ctrlMu.Unlock()
	if err != nil {
		f.log.Warn("sending the desired set", "agent", s.ID, "err", err)
		return false
	}
	return true
}

// resyncInterval spaces the full sets an agent's requests
// (Heartbeat.DesiredResync) cost: a request within it waits for its end.
const resyncInterval = time.Second

// resyncRequested sends s its full set from a fresh read: its agent
// could not apply a delta (it holds another set). Requests that come
// while one waits are one.
func (f *Fleet) resyncRequested(s *Session) {
	if !s.resyncPending.CompareAndSwap(false, true) {
		return
	}
	f.bg.Go(func(ctx context.Context) {
		defer s.resyncPending.Store(false)
		if wait := time.Until(time.Unix(0, s.lastResync.Load()).Add(resyncInterval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
		s.lastResync.Store(time.Now().UnixNano())
		s.syncMu.Lock()
		s.desiredSent = false
		s.syncMu.Unlock()
		in, err := f.desiredInputs(ctx)
		if err != nil {
			f.log.Error("reading the desired set", "agent", s.ID, "err", err)
			return
		}
		f.log.Info("an agent asked for its full desired set", "agent", s.ID)
		f.syncDesired(ctx, s, in)
	})
}

// pushMissing pushes the code of fns the agent still lacks, one digest
// at a time, skipping a digest another sync of the session is pushing.
func (f *Fleet) pushMissing(ctx context.Context, s *Session, fns []store.Function) {
	for _, fn := range fns {
		if s.HasDigest(fn.Digest) || !s.startPush(fn.Digest) {
			continue
		}
		if !f.pushOne(ctx, s, fn) {
			s.syncMu.Lock()
			if s.unpushed == nil {
				s.unpushed = map[string]store.Function{}
			}
			s.unpushed[fn.Digest] = fn // pushed again at the next sync
			s.syncMu.Unlock()
		}
		s.endPush(fn.Digest)
	}
}

// startPush claims digest d for a push to s; false when one is running.
func (s *Session) startPush(d string) bool {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if _, busy := s.pushing[d]; busy {
		return false
	}
	if s.pushing == nil {
		s.pushing = map[string]struct{}{}
	}
	s.pushing[d] = struct{}{}
	return true
}

func (s *Session) endPush(d string) {
	s.syncMu.Lock()
	delete(s.pushing, d)
	s.syncMu.Unlock()
}

// pushOne pushes fn's code to s and reports whether it did.
func (f *Fleet) pushOne(ctx context.Context, s *Session, fn store.Function) bool {
	code, err := f.cfg.Store.Code(ctx, fn.Digest)
	if err != nil {
		f.log.Warn("reading code for a push", "digest", fn.Digest, "err", err)
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := s.Push(pctx, fn.Digest, code); err != nil {
		f.log.Warn("pushing desired code", "agent", s.ID, "module", fn.Module, "function", fn.Name, "err", err)
		return false
	}
	return true
}

// SyncDesired sends every connected agent what changed in its desired set
// (after a function changed) and pushes the code it lacks. Agents whose
// set did not change get nothing.
func (f *Fleet) SyncDesired(ctx context.Context) {
	f.desiredEpoch.Add(1) // what connecting sessions share is stale now
	in, err := f.desiredInputs(ctx)
	if err != nil {
		f.log.Error("reading the desired sets", "err", err)
		return
	}
	for _, s := range f.Sessions() {
		f.bg.Go(func(bctx context.Context) { f.syncDesired(bctx, s, in) })
	}
}

// syncOne sends one session its desired set (a new session, or one
// whose labels changed).
func (f *Fleet) syncOne(ctx context.Context, s *Session) {
	in, err := f.sharedInputs(ctx)
	if err != nil {
		f.log.Error("reading the desired set", "agent", s.ID, "err", err)
		return
	}
	f.syncDesired(ctx, s, in)
}

// sharedInputsAge bounds how long sessions share one read of the desired
// sets' inputs.
const sharedInputsAge = 2 * time.Second

// sharedInputs is one read of the desired sets' inputs shared by the
// sessions that connect while nothing changed (a thousand agents coming
// back to a restarted controller make a few reads, not a thousand): it
// is read again after SyncDesired was called (every change leads to one,
// from the API or the store's change feed, which also sends every session
// a set from a later read) and after sharedInputsAge.
func (f *Fleet) sharedInputs(ctx context.Context) (*desiredInputs, error) {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	epoch := f.desiredEpoch.Load()
	if sh := &f.shared; sh.in != nil && sh.epoch == epoch && time.Since(sh.at) < sharedInputsAge {
		return sh.in, nil
	}
	at := time.Now()
	in, err := f.desiredInputs(ctx)
	if err != nil {
		return nil, err
	}
	f.shared.in, f.shared.epoch, f.shared.at = in, epoch, at
	return in, nil
}

// serveAgentStreams handles the streams an agent opens after its hello:
// outbox batches.
func (f *Fleet) serveAgentStreams(ctx context.Context, s *Session) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		str, err := s.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() { f.serveOutbox(ctx, s, str) })
	}
}

func (f *Fleet) serveOutbox(ctx context.Context, s *Session, str *quic.Stream) {
	defer str.CancelRead(0)
	defer str.Close()
	str.SetReadDeadline(time.Now().Add(60 * time.Second))
	msg, err := protocol.ReadMsg(str, protocol.MaxFrameSize)
	if err != nil {
		return
	}
	batch, ok := msg.(*protocol.OutboxBatch)
	if !ok {
		protocol.WriteMsg(str, &protocol.Error{Code: protocol.BadRequest, Message: "expected OutboxBatch"})
		return
	}
	s.lastSeen.Store(time.Now().UnixNano())
	if f.cfg.Outbox == nil {
		protocol.WriteMsg(str, &protocol.Error{Code: protocol.Internal, Message: "this controller does not record activations"})
		return
	}
	if err := f.cfg.Outbox.Outbox(ctx, s.ID, batch.Entries); err != nil {
		f.log.Error("recording an outbox batch", "agent", s.ID, "entries", len(batch.Entries), "err", err)
		protocol.WriteMsg(str, &protocol.Error{Code: protocol.Internal, Message: "cannot record activations now"})
		return
	}
	ack := &protocol.OutboxAck{IDs: make([]string, len(batch.Entries))}
	for i, e := range batch.Entries {
		ack.IDs[i] = e.ActivationID
	}
	protocol.WriteMsg(str, ack)
}
