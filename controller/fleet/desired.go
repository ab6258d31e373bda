package fleet

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/controller/fnspec"
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
// agent).
func (f *Fleet) scripts(ctx context.Context) []scheduler.Script {
	var scripts []scheduler.Script
	all, err := f.cfg.Store.ListScripts(ctx)
	if err != nil {
		f.log.Warn("listing APP scripts for assignment", "err", err)
		return nil
	}
	for _, sc := range all {
		if parsed, err := scheduler.ParseAPP(sc.Source); err == nil {
			scripts = append(scripts, parsed)
		}
	}
	return scripts
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
type desiredInputs struct {
	// gen orders snapshots: taken before the store is read, so a higher
	// gen read the store later. A session never gets a set made from a
	// lower gen than one it already got.
	gen      uint64
	fns      []store.Function
	scripts  []scheduler.Script
	labelled map[string]bool
	kept     map[string][]string
	// secrets are the values of each function's secrets ("module/name"),
	// for the functions whose config names some; unreadable marks those
	// whose secrets cannot be opened now.
	secrets    map[string][]protocol.Secret
	unreadable map[string]bool
	// used holds the digests of every function and of the code agents
	// keep for rollbacks; gone caches, for a digest an agent holds
	// outside it, whether the store still has its code (goneMu).
	used   map[string]bool
	goneMu sync.Mutex
	gone   map[string]bool
}

// codeGone reports whether the store no longer holds d's code (no
// function and no kept version uses it: it was collected), asking it at
// most once per sync. A store that cannot say (no store.CodeChecker), or
// a read that fails, says no.
func (in *desiredInputs) codeGone(ctx context.Context, st Store, d string) bool {
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

// desiredInputs reads what desired sets are made of.
func (f *Fleet) desiredInputs(ctx context.Context) (*desiredInputs, error) {
	in := &desiredInputs{gen: f.desiredGen.Add(1), secrets: map[string][]protocol.Secret{}, unreadable: map[string]bool{},
		used: map[string]bool{}, gone: map[string]bool{}}
	fns, err := f.cfg.Store.ListFunctions(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: list functions: %w", err)
	}
	in.fns = fns
	in.scripts = f.scripts(ctx)
	in.labelled = f.labelledTags(ctx)
	in.kept = f.keptDigests(ctx)
	for _, ds := range in.kept {
		for _, d := range ds {
			in.used[d] = true
		}
	}
	for _, fn := range fns {
		in.used[fn.Digest] = true
		if len(fn.Spec.Config.Secrets) == 0 {
			continue
		}
		key := fn.Module + "/" + fn.Name
		vals, err := f.secretValues(ctx, fn.Module, fn.Spec.Config.Secrets)
		if err != nil {
			f.log.Warn("the desired sets go without a function's secrets", "module", fn.Module, "function", fn.Name, "err", err)
			in.unreadable[key] = true
			continue
		}
		in.secrets[key] = vals
	}
	return in, nil
}

// syncDesired sends a session its desired set, unless it is the set the
// session got last (a resync that changes nothing for an agent sends it
// nothing: every controller resyncs on every change it learns of, its
// own included), and pushes the code the agent lacks in any case (an
// agent of another controller may lack code this one never pushed).
//
// An agent holding code the store collected (a function deleted through
// another controller, whose Drop went only to that controller's agents)
// is told to drop it.
func (f *Fleet) syncDesired(ctx context.Context, s *Session, in *desiredInputs) {
	if missing := f.sendDesired(s, in); len(missing) > 0 {
		f.pushMissing(ctx, s, missing)
	}
	var gone []string
	for h := range *s.digests.Load() {
		if d := h.Value(); !in.used[d] && in.codeGone(ctx, f.cfg.Store, d) {
			gone = append(gone, d)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		f.log.Info("telling an agent to drop code no function uses any more", "agent", s.ID, "digests", gone)
		s.drop(gone)
	}
}

// sendDesired sends s its set made of in unless it is the one sent last,
// and returns the functions whose code the agent lacks. Sends to one
// session are ordered; pushes are not held up by them, nor they by
// pushes.
func (f *Fleet) sendDesired(s *Session, in *desiredInputs) (missing []store.Function) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if in.gen < s.desiredGen {
		return nil // a set made from a later read was sent already
	}
	s.desiredGen = in.gen
	set := &protocol.DesiredSet{}
	for _, fn := range in.fns {
		if !assigned(s, fn, in.scripts, in.labelled) {
			continue
		}
		key := fn.Module + "/" + fn.Name
		// Secrets travel only in this QUIC session. A set without the
		// values would strip them from the agent: none is sent then, and
		// the agent keeps its last one.
		if in.unreadable[key] {
			f.log.Warn("the desired set is not sent: a function's secrets cannot be read now", "agent", s.ID, "module", fn.Module, "function", fn.Name)
			return nil
		}
		set.Functions = append(set.Functions, protocol.DesiredFunction{Module: fn.Module, Name: fn.Name, Digest: fn.Digest,
			LocalTopics: fnspec.LocalTopics(fn.Spec.Events), Env: configEnv(fn.Spec.Config), AllowHosts: f.allowHosts(fn.Spec.Config),
			Timers: localTimers(fn.Spec.Events), KeepDigests: in.kept[key], Secrets: in.secrets[key]})
		if !s.HasDigest(fn.Digest) {
			missing = append(missing, fn)
		}
	}
	// Agents read control frames of at most 1 MiB (agent/link's
	// maxControlFrame); secrets (16 KiB each) make a larger set possible.
	// One over it is not sent: the agent keeps its last set.
	payload := set.Append(nil)
	if n := len(payload); n > maxDesiredSetBytes {
		f.log.Error("the desired set is over the agents' control-frame bound; not sent", "agent", s.ID, "functions", len(set.Functions), "bytes", n, "limit", maxDesiredSetBytes)
		return nil
	}
	if sum := sha256.Sum256(payload); !s.desiredSent || sum != s.desiredSum {
		s.ctrlMu.Lock()
		err := protocol.WriteFrame(s.ctrl, protocol.Frame{Type: set.Type(), Payload: payload})
		s.ctrlMu.Unlock()
		if err != nil {
			f.log.Warn("sending the desired set", "agent", s.ID, "err", err)
			return nil
		}
		s.desiredSum, s.desiredSent = sum, true
		f.cfg.Metrics.desiredSent()
	}
	return missing
}

// pushMissing pushes the code of fns the agent still lacks, one digest
// at a time, skipping a digest another sync of the session is pushing.
func (f *Fleet) pushMissing(ctx context.Context, s *Session, fns []store.Function) {
	for _, fn := range fns {
		if s.HasDigest(fn.Digest) || !s.startPush(fn.Digest) {
			continue
		}
		f.pushOne(ctx, s, fn)
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

func (f *Fleet) pushOne(ctx context.Context, s *Session, fn store.Function) {
	code, err := f.cfg.Store.Code(ctx, fn.Digest)
	if err != nil {
		f.log.Warn("reading code for a push", "digest", fn.Digest, "err", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := s.Push(pctx, fn.Digest, code); err != nil {
		f.log.Warn("pushing desired code", "agent", s.ID, "module", fn.Module, "function", fn.Name, "err", err)
	}
}

// SyncDesired sends every connected agent its desired set (after a
// function changed) and pushes the code it lacks. Agents whose set did
// not change get nothing.
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
