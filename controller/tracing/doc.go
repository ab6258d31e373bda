// Package tracing is the controller's side of distributed tracing: W3C
// trace context (the traceparent header, carried to agents in
// protocol.Invoke.TraceParent) and an exporter that batches finished spans
// and POSTs them to an OTLP/HTTP receiver as protobuf.
//
// It is deliberately not an OpenTelemetry SDK: Wisp makes a handful of
// spans per invocation (the REST request, scheduling, dispatch, and the
// phases an agent reports with their measured durations), so a span here is
// a plain value built after the fact, and the exporter is one goroutine.
// Agents never import it: they only echo the traceparent they were given.
//
// # Contracts
//
//   - Tracing off costs nothing: a nil *Exporter is valid, Enabled reports
//     false, and the callers build no span and parse no header then.
//   - Export never blocks: spans go to a bounded queue; when it is full
//     the span is dropped and counted (wisp_controller_trace_spans_total
//     {result="dropped"}). A dead or slow receiver slows only the
//     exporter's goroutine.
//   - Run flushes what is queued when its context ends, within a fresh
//     timeout, then returns.
//
// The request body is an opentelemetry.proto.trace.v1.TracesData, whose
// encoding is by definition that of an ExportTraceServiceRequest (both are
// "repeated ResourceSpans resource_spans = 1"): it keeps the generated
// collector package, and the gRPC it imports, out of the controller binary.
package tracing
