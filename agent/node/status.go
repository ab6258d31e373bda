package node

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/protocol"
)

// ready is the agent's /readyz verdict (local API and metrics listeners):
// ready once every part runs (the runtime is up and the state file open
// for as long as run runs) until it starts draining, and, with
// Config.ReadyRequiresLink, while at least one controller link is up.
func (a *agent) ready(context.Context) string {
	switch {
	case a.stopping.Load():
		return health.ReasonStopping
	case !a.serving.Load():
		return health.ReasonStarting
	case a.cfg.ReadyRequiresLink && !a.linked():
		return health.ReasonNoControllerLink
	}
	return ""
}

// linked reports whether a controller link is up.
func (a *agent) linked() bool { return a.links.Connected() }

// statusRecent is how many undelivered outbox entries a status shows
// beside the ring.
const statusRecent = status.DefaultRecent

// status is the running agent's Report (GET /v1/status on the local API).
func (a *agent) status(context.Context) (status.Report, error) {
	r := status.Report{From: status.FromAPI, DataDir: a.cfg.DataDir, Links: []status.Link{}, Recent: a.recent.List()}
	id, err := a.st.Identity()
	if err != nil {
		return r, err
	}
	r.AgentID = id.AgentID
	reason := a.ready(context.Background())
	r.Ready = &status.Readiness{Ready: reason == "", Reason: reason}
	r.Links = append(r.Links, a.links.Status()...)
	fs, err := a.st.Desired()
	if err != nil {
		return r, err
	}
	r.Desired = desired(fs, a.st.HasCode)
	b, err := a.st.Backlog(0)
	if err != nil {
		return r, err
	}
	r.Outbox = backlog(b)
	return r, nil
}

// ReadStatus is the Report of a stopped agent's data dir: its identity,
// desired set and outbox, with the outbox's undelivered activations
// (newest first) as its recent ones. The state file is opened read only;
// a running agent holds it, and then ReadStatus fails after timeout with
// an error matching state.ErrLocked.
func ReadStatus(dataDir string, timeout time.Duration) (status.Report, error) {
	snap, err := state.ReadSnapshot(filepath.Join(dataDir, "agent.db"), timeout, statusRecent)
	if err != nil {
		return status.Report{}, err
	}
	r := status.Report{From: status.FromDataDir, DataDir: dataDir, AgentID: snap.AgentID, Links: []status.Link{},
		Outbox: backlog(snap.Outbox), Recent: []status.Activation{}}
	r.Desired = desired(snap.Desired, func(d string) bool { _, ok := slices.BinarySearch(snap.Digests, d); return ok })
	for _, e := range snap.Outbox.Newest {
		r.Recent = append(r.Recent, outboxActivation(e))
	}
	return r, nil
}

func desired(fs []protocol.DesiredFunction, hasCode func(string) bool) []status.Function {
	out := make([]status.Function, 0, len(fs))
	for _, f := range fs {
		out = append(out, status.Function{Module: f.Module, Name: f.Name, Digest: f.Digest, LocalTopics: f.LocalTopics,
			LocalTimers: timerNames(f.Timers), HasCode: hasCode(f.Digest)})
	}
	return out
}

// timerNames shows desired-set timers as "cron <expr>" or "every <duration>".
func timerNames(ts []protocol.Timer) []string {
	var out []string
	for _, t := range ts {
		if t.Cron != "" {
			out = append(out, "cron "+t.Cron)
		} else {
			out = append(out, "every "+(time.Duration(min(t.EveryMS, math.MaxInt64/uint64(time.Millisecond)))*time.Millisecond).String())
		}
	}
	return out
}

func backlog(b state.Backlog) status.Outbox {
	o := status.Outbox{Count: b.Count, Bytes: b.Bytes}
	if b.OldestUnixUS != 0 {
		o.Oldest = time.UnixMicro(int64(b.OldestUnixUS)).UTC()
	}
	return o
}

// outboxActivation shows an undelivered outbox entry as an activation.
func outboxActivation(e protocol.OutboxEntry) status.Activation {
	return status.Activation{ID: e.ActivationID, Module: e.Module, Function: e.Function, Source: e.Source,
		Status: status.StatusOf(e.Code), Started: time.UnixMicro(int64(e.StartedUnixUS)).UTC(),
		Duration: time.Duration(e.DurationUS) * time.Microsecond, Logs: e.Logs}
}
