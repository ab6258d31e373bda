package activations

import (
	"crypto/sha256"
	"time"

	"github.com/wispfn/wisp/controller/tracing"
	"github.com/wispfn/wisp/protocol"
)

// SpanEdgeActivation is the name of the span of an activation an agent ran
// on its own for a traced local caller (its local invoke API).
const SpanEdgeActivation = "wisp.edge.activation"

// traceEdge exports the span of an outbox entry whose caller sent a
// sampled traceparent: a child of the caller's span, timed as the agent
// measured it. Its span id comes from the activation id, so an entry the
// agent replays (its ack was lost) exports the same span again, which a
// collector takes for one, rather than a second span.
func (r *Recorder) traceEdge(agentID string, e *protocol.OutboxEntry) {
	parent, ok := tracing.ParseTraceParent(e.TraceParent)
	if !ok || !parent.Sampled() {
		return
	}
	sc := parent
	sum := sha256.Sum256([]byte("wisp.edge:" + e.ActivationID))
	copy(sc.SpanID[:], sum[:8])
	start := time.UnixMicro(int64(e.StartedUnixUS))
	sp := tracing.Span{Context: sc, Parent: parent.SpanID, Name: SpanEdgeActivation, Kind: tracing.KindServer,
		Start: start, End: start.Add(time.Duration(e.DurationUS) * time.Microsecond),
		Attrs: []tracing.Attr{
			tracing.String(tracing.AttrModule, e.Module), tracing.String(tracing.AttrFunction, e.Function),
			tracing.String(tracing.AttrActivationID, e.ActivationID), tracing.String(tracing.AttrAgentID, agentID),
			tracing.String(tracing.AttrSource, e.Source),
		}}
	if e.Code != protocol.OK {
		sp.Err = e.Code.String()
		if e.Message != "" {
			sp.Err += ": " + e.Message
		}
	}
	r.tracer.Export(sp)
}
