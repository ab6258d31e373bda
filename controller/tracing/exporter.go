package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Defaults of Config.
const (
	DefaultQueueSize     = 4096
	DefaultBatchSize     = 512
	DefaultFlushInterval = 2 * time.Second
	DefaultTimeout       = 5 * time.Second
)

// Config configures an Exporter.
type Config struct {
	// Endpoint is the OTLP/HTTP receiver's base URL (http://host:4318);
	// spans go to Endpoint + "/v1/traces" unless it already ends so.
	Endpoint string
	// ServiceName is the resource's service.name; "" means "wisp-controller".
	ServiceName string
	// Instance is the resource's service.instance.id (the host name); optional.
	Instance string
	// QueueSize bounds the spans waiting to be sent; more are dropped.
	QueueSize int
	// BatchSize is the most spans one request carries.
	BatchSize int
	// FlushInterval is how long a span waits at most for its batch to fill.
	FlushInterval time.Duration
	// Timeout bounds one request to the receiver.
	Timeout time.Duration
	// Client sends the requests; nil means a client of its own.
	Client  *http.Client
	Metrics *Metrics
	Logger  *slog.Logger
}

// Exporter sends spans to an OTLP/HTTP receiver. A nil *Exporter is
// tracing off: Export does nothing and Enabled reports false.
type Exporter struct {
	cfg      Config
	url      string
	queue    chan Span
	resource *resourcepb.Resource
	log      *slog.Logger
	m        *Metrics
}

// New checks cfg and returns an Exporter; Run sends what it is given.
func New(cfg Config) (*Exporter, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: OTLP endpoint %q: want http://host:port or https://host:port", ErrBadEndpoint, cfg.Endpoint)
	}
	full := strings.TrimRight(cfg.Endpoint, "/")
	if !strings.HasSuffix(full, "/v1/traces") {
		full += "/v1/traces"
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "wisp-controller"
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", cfg.ServiceName)}}
	if cfg.Instance != "" {
		res.Attributes = append(res.Attributes, strAttr("service.instance.id", cfg.Instance))
	}
	return &Exporter{cfg: cfg, url: full, queue: make(chan Span, cfg.QueueSize), resource: res, log: cfg.Logger, m: cfg.Metrics}, nil
}

// ErrBadEndpoint: the OTLP endpoint is not an http(s) URL.
var ErrBadEndpoint = errors.New("bad OTLP endpoint")

// Enabled reports whether spans are exported.
func (e *Exporter) Enabled() bool { return e != nil }

// Export queues a finished span without blocking: when the queue is full
// the span is dropped and counted.
func (e *Exporter) Export(s Span) {
	if e == nil {
		return
	}
	select {
	case e.queue <- s:
	default:
		e.m.add(resultDropped, 1)
	}
}

// Run sends queued spans in batches until ctx ends, then sends what is
// still queued (within the exporter's Timeout) and returns nil.
func (e *Exporter) Run(ctx context.Context) error {
	batch := make([]Span, 0, e.cfg.BatchSize)
	// A request in flight when ctx ends finishes (within Timeout): its
	// spans are not lost to the shutdown.
	sendCtx := context.WithoutCancel(ctx)
	tick := time.NewTicker(e.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case s := <-e.queue:
			if batch = append(batch, s); len(batch) == e.cfg.BatchSize {
				e.send(sendCtx, batch)
				batch = batch[:0]
			}
		case <-tick.C:
			if len(batch) > 0 {
				e.send(sendCtx, batch)
				batch = batch[:0]
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(sendCtx, e.cfg.Timeout)
			defer cancel()
			for {
				select {
				case s := <-e.queue:
					if batch = append(batch, s); len(batch) == e.cfg.BatchSize {
						e.send(fctx, batch)
						batch = batch[:0]
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				e.send(fctx, batch)
			}
			return nil
		}
	}
}

// send POSTs one batch; a failure is logged and its spans counted as failed.
func (e *Exporter) send(ctx context.Context, batch []Span) {
	body, err := proto.Marshal(e.encode(batch))
	if err == nil {
		err = e.post(ctx, body)
	}
	if err != nil {
		e.m.add(resultFailed, len(batch))
		e.log.Warn("exporting trace spans", "spans", len(batch), "endpoint", e.url, "err", err)
		return
	}
	e.m.add(resultExported, len(batch))
}

func (e *Exporter) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// encode is the batch as OTLP TracesData (the ExportTraceServiceRequest layout).
func (e *Exporter) encode(batch []Span) *tracepb.TracesData {
	spans := make([]*tracepb.Span, len(batch))
	for i := range batch {
		s := &batch[i]
		ps := &tracepb.Span{
			TraceId:           append([]byte(nil), s.Context.TraceID[:]...),
			SpanId:            append([]byte(nil), s.Context.SpanID[:]...),
			Flags:             uint32(s.Context.Flags),
			Name:              s.Name,
			Kind:              tracepb.Span_SpanKind(s.Kind),
			StartTimeUnixNano: uint64(s.Start.UnixNano()),
			EndTimeUnixNano:   uint64(s.End.UnixNano()),
		}
		if s.Parent != [8]byte{} {
			ps.ParentSpanId = append([]byte(nil), s.Parent[:]...)
		}
		for _, a := range s.Attrs {
			if a.IsInt {
				ps.Attributes = append(ps.Attributes, &commonpb.KeyValue{Key: a.Key, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: a.Int}}})
			} else {
				ps.Attributes = append(ps.Attributes, strAttr(a.Key, a.Str))
			}
		}
		if s.Err != "" {
			ps.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: s.Err}
		}
		spans[i] = ps
	}
	return &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   e.resource,
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "github.com/wispfn/wisp/controller/tracing"}, Spans: spans}},
	}}}
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// Metrics count the exporter's spans. A nil *Metrics counts nothing.
type Metrics struct{ spans *prometheus.CounterVec }

// Results counted by wisp_controller_trace_spans_total.
const (
	resultExported = "exported" // the receiver accepted them
	resultDropped  = "dropped"  // the queue was full
	resultFailed   = "failed"   // the request failed or was refused
)

// NewMetrics registers wisp_controller_trace_spans_total on reg (with
// zeros, so rates work from the start, and so it exists with tracing off).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{spans: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wisp_controller_trace_spans_total",
		Help: "Trace spans the controller handled for OTLP export, by result: exported, dropped (queue full) or failed (the receiver refused or did not answer).",
	}, []string{"result"})}
	for _, r := range []string{resultExported, resultDropped, resultFailed} {
		m.spans.WithLabelValues(r)
	}
	reg.MustRegister(m.spans)
	return m
}

func (m *Metrics) add(result string, n int) {
	if m != nil {
		m.spans.WithLabelValues(result).Add(float64(n))
	}
}
