package fleet

import (
	"time"

	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/tracing"
	"github.com/wispfn/wisp/protocol"
)

// Span names of an invocation's trace below the REST request's span.
const (
	spanSchedule = "wisp.schedule"
	spanDispatch = "wisp.dispatch"
	// The agent's phases, children of the dispatch span, in the order
	// the agent runs them (agent/executor): code fetch, compile, wait for
	// an instance slot, instantiate, run.
	spanTransfer    = "wisp.agent.transfer"
	spanCompile     = "wisp.agent.compile"
	spanQueue       = "wisp.agent.queue"
	spanInstantiate = "wisp.agent.instantiate"
	spanRun         = "wisp.agent.run"
)

// traceSchedule exports the span of one scheduling decision.
func (d *Dispatcher) traceSchedule(req invoke.Request, inv *protocol.Invoke, attempt int, start time.Time, considered int, s *Session, err error) {
	sp := tracing.Span{Context: req.Trace.Child(), Parent: req.Trace.SpanID, Name: spanSchedule, Kind: tracing.KindInternal,
		Start: start, End: time.Now(), Attrs: []tracing.Attr{
			tracing.String(tracing.AttrModule, req.Module), tracing.String(tracing.AttrFunction, req.Function),
			tracing.String(tracing.AttrActivationID, inv.ActivationID), tracing.Int(tracing.AttrAttempt, int64(attempt)),
			tracing.Int("wisp.candidates", int64(considered)),
		}}
	if err != nil {
		sp.Err = err.Error()
	} else {
		sp.Attrs = append(sp.Attrs, tracing.String(tracing.AttrAgentID, s.ID), tracing.String(tracing.AttrAgentName, s.Name()))
	}
	d.tracer.Export(sp)
}

// traceDispatch exports the span of one QUIC round trip to an agent and,
// when the agent answered, one child span per phase it reported, with the
// reported durations. The agent's clock is not the controller's: the
// phases are laid end to end in the middle of the round trip, as if the
// network took as long each way.
func (d *Dispatcher) traceDispatch(req invoke.Request, inv *protocol.Invoke, attempt int, s *Session, sc tracing.SpanContext, start time.Time, res *protocol.Result, err error) {
	end := time.Now()
	common := []tracing.Attr{
		tracing.String(tracing.AttrModule, req.Module), tracing.String(tracing.AttrFunction, req.Function),
		tracing.String(tracing.AttrActivationID, inv.ActivationID),
		tracing.String(tracing.AttrAgentID, s.ID), tracing.String(tracing.AttrAgentName, s.Name()),
	}
	sp := tracing.Span{Context: sc, Parent: req.Trace.SpanID, Name: spanDispatch, Kind: tracing.KindClient, Start: start, End: end,
		Attrs: append(append([]tracing.Attr{}, common...), tracing.Int(tracing.AttrAttempt, int64(attempt)))}
	switch {
	case err != nil:
		sp.Err = err.Error()
	case res.Code != protocol.OK:
		sp.Err = res.Code.String()
		if res.Message != "" {
			sp.Err += ": " + res.Message
		}
	}
	if res != nil {
		sp.Attrs = append(sp.Attrs, tracing.String(tracing.AttrResult, resultLabel(res.Code)))
	}
	d.tracer.Export(sp)
	if res == nil || err != nil {
		return
	}
	phases := [...]struct {
		name string
		us   uint64
	}{{spanTransfer, res.TransferUS}, {spanCompile, res.CompileUS}, {spanQueue, res.QueueUS}, {spanInstantiate, res.InstantiateUS}, {spanRun, res.RunUS}}
	var sum time.Duration
	for _, p := range phases {
		sum += time.Duration(p.us) * time.Microsecond
	}
	at := start.Add(max(end.Sub(start)-sum, 0) / 2)
	for _, p := range phases {
		if p.us == 0 && p.name != spanRun {
			continue // the phase did not happen (warm code, a free slot)
		}
		dur := time.Duration(p.us) * time.Microsecond
		d.tracer.Export(tracing.Span{Context: sc.Child(), Parent: sc.SpanID, Name: p.name, Kind: tracing.KindInternal, Start: at, End: at.Add(dur),
			Attrs: append(append([]tracing.Attr{}, common...), tracing.Int(tracing.AttrDurationUS, int64(p.us)))})
		at = at.Add(dur)
	}
}
