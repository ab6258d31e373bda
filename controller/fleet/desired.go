package fleet

import (
	"context"
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

// assignmentInputs gathers what assigned needs beyond the session: the
// parsed APP scripts and the tags some connected agent is labelled with.
func (f *Fleet) assignmentInputs(ctx context.Context) ([]scheduler.Script, map[string]bool) {
	var scripts []scheduler.Script
	if all, err := f.cfg.Store.ListScripts(ctx); err == nil {
		for _, sc := range all {
			if parsed, err := scheduler.ParseAPP(sc.Source); err == nil {
				scripts = append(scripts, parsed)
			}
		}
	} else {
		f.log.Warn("listing APP scripts for assignment", "err", err)
	}
	labelled := map[string]bool{}
	for _, s := range f.Sessions() {
		for _, l := range s.Labels() {
			if t, ok := strings.CutPrefix(l, "tag="); ok {
				labelled[t] = true
			}
		}
	}
	return scripts, labelled
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

// Desired sets from several controllers (issue 15, point 1): every
// controller sends each of its agents the set it computes from the one
// store, after every change it learns of (its own, and the others'
// through the store), and the agent keeps the last set it received from
// any of them. A controller that read the store before a change may send
// its older set after another controller sent the newer one; it learns of
// the change too, reads again and sends the newer set, so a stale set
// lasts until the lagging controller's next sync. For that, a
// controller's own sends to a session must never go out of order: a
// sync whose store read began before that of a set already sent is
// dropped (desiredOrder). No version travels on the wire: the store is
// the one source, and a controller's next sync after a change is what
// corrects an agent.

// functionsRead is the store's functions as a desired-set sync read
// them; seq orders the reads (a larger one began later).
type functionsRead struct {
	fns []store.Function
	seq uint64
}

// readFunctions lists the functions for desired-set syncs.
func (f *Fleet) readFunctions(ctx context.Context) (functionsRead, error) {
	seq := f.desiredSeq.Add(1) // before the read: a later seq reads later
	fns, err := f.cfg.Store.ListFunctions(ctx)
	return functionsRead{fns: fns, seq: seq}, err
}

// desiredOrder keeps a session's desired sets in the order their reads
// began: sent is the seq of the last set sent.
type desiredOrder struct {
	mu   sync.Mutex
	sent uint64
}

// syncDesired sends a session its desired set and pushes the code it lacks.
func (f *Fleet) syncDesired(ctx context.Context, s *Session, read functionsRead) {
	fns := read.fns
	scripts, labelled := f.assignmentInputs(ctx)
	kept := f.keptDigests(ctx)
	set := &protocol.DesiredSet{}
	var missing []store.Function
	for _, fn := range fns {
		if !assigned(s, fn, scripts, labelled) {
			continue
		}
		df := protocol.DesiredFunction{Module: fn.Module, Name: fn.Name, Digest: fn.Digest, LocalTopics: fnspec.LocalTopics(fn.Spec.Events),
			Env: configEnv(fn.Spec.Config), AllowHosts: f.allowHosts(fn.Spec.Config),
			Timers: localTimers(fn.Spec.Events), KeepDigests: kept[fn.Module+"/"+fn.Name]}
		// Secrets travel only in this QUIC session. A set without the
		// values would strip them from the agent: none is sent then, and
		// the agent keeps its last one.
		var ok bool
		if df.Secrets, ok = f.desiredSecrets(ctx, s.ID, fn); !ok {
			return
		}
		set.Functions = append(set.Functions, df)
		if !s.HasDigest(fn.Digest) {
			missing = append(missing, fn)
		}
	}
	// Agents read control frames of at most 1 MiB (agent/link's
	// maxControlFrame); secrets (16 KiB each) make a larger set possible.
	// One over it is not sent: the agent keeps its last set.
	if n := len(set.Append(nil)); n > maxDesiredSetBytes {
		f.log.Error("the desired set is over the agents' control-frame bound; not sent", "agent", s.ID, "functions", len(set.Functions), "bytes", n, "limit", maxDesiredSetBytes)
		return
	}
	s.desired.mu.Lock()
	if read.seq < s.desired.sent {
		s.desired.mu.Unlock()
		f.log.Debug("a desired set from a later read was sent already; not sending this one", "agent", s.ID)
		return
	}
	s.ctrlMu.Lock()
	err := protocol.WriteMsg(s.ctrl, set)
	s.ctrlMu.Unlock()
	if err == nil {
		s.desired.sent = read.seq
	}
	s.desired.mu.Unlock()
	if err != nil {
		f.log.Warn("sending the desired set", "agent", s.ID, "err", err)
		return
	}
	pushed := map[string]bool{}
	for _, fn := range missing {
		if pushed[fn.Digest] {
			continue
		}
		pushed[fn.Digest] = true
		code, err := f.cfg.Store.Code(ctx, fn.Digest)
		if err != nil {
			f.log.Warn("reading code for a push", "digest", fn.Digest, "err", err)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, pushTimeout)
		if err := s.Push(pctx, fn.Digest, code); err != nil {
			f.log.Warn("pushing desired code", "agent", s.ID, "module", fn.Module, "function", fn.Name, "err", err)
		}
		cancel()
	}
}

// SyncDesired sends every connected agent its desired set (after a
// function changed) and pushes the code it lacks.
func (f *Fleet) SyncDesired(ctx context.Context) {
	read, err := f.readFunctions(ctx)
	if err != nil {
		f.log.Error("listing functions for the desired sets", "err", err)
		return
	}
	for _, s := range f.Sessions() {
		f.bg.Go(func(bctx context.Context) { f.syncDesired(bctx, s, read) })
	}
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
