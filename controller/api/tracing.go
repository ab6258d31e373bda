package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/wispfn/wisp/controller/tracing"
)

// spanInvoke names the span of an invocation request.
const spanInvoke = "POST /v1/fn/{module}/{function}"

// tracedInvoke answers an invocation request with tracing on: the span
// continues the caller's trace (its W3C traceparent header) or, without
// one or with a malformed one, which is ignored, starts a new trace. An
// unsampled caller's trace is carried on but not exported.
func (s *Server) tracedInvoke(c *fiber.Ctx) error {
	start := time.Now()
	var sc tracing.SpanContext
	var parent [8]byte
	if p, ok := tracing.ParseTraceParent(c.Get("traceparent")); ok {
		sc, parent = p.Child(), p.SpanID
	} else {
		sc = tracing.NewTrace()
	}
	err := s.runInvoke(c, sc)
	if !sc.Sampled() {
		return err
	}
	status := c.Response().StatusCode()
	sp := tracing.Span{Context: sc, Parent: parent, Name: spanInvoke, Kind: tracing.KindServer, Start: start, End: time.Now()}
	if err != nil {
		var detail string
		status, detail = statusOf(err)
		sp.Err = detail
	}
	sp.Attrs = []tracing.Attr{
		tracing.String(tracing.AttrModule, strings.Clone(c.Params("mod"))),
		tracing.String(tracing.AttrFunction, strings.Clone(c.Params("fn"))),
		tracing.String(tracing.AttrMethod, http.MethodPost), tracing.String(tracing.AttrRoute, "/v1/fn/{module}/{function}"),
		tracing.Int(tracing.AttrStatus, int64(status)),
	}
	s.tracer.Export(sp)
	return err
}
