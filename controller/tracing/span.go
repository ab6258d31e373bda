package tracing

import "time"

// Span is one finished span, built by its caller after the fact.
type Span struct {
	Context SpanContext // its trace id, its own span id and flags
	Parent  [8]byte     // the parent's span id; zero for a root span
	Name    string
	Kind    Kind
	Start   time.Time
	End     time.Time
	Attrs   []Attr
	// Err, when not empty, marks the span as failed with this message.
	Err string
}

// Kind is the span's role (OTLP SpanKind).
type Kind int32

// Kinds Wisp uses; the values are OTLP's.
const (
	KindInternal Kind = 1
	KindServer   Kind = 2
	KindClient   Kind = 3
)

// Attr is one span attribute: a string or an integer.
type Attr struct {
	Key   string
	Str   string
	Int   int64
	IsInt bool
}

// String is a string attribute.
func String(k, v string) Attr { return Attr{Key: k, Str: v} }

// Int is an integer attribute.
func Int(k string, v int64) Attr { return Attr{Key: k, Int: v, IsInt: true} }

// Attribute keys Wisp's spans carry (OpenTelemetry's semantic conventions
// where one exists).
const (
	AttrModule       = "wisp.module"
	AttrFunction     = "wisp.function"
	AttrActivationID = "wisp.activation_id"
	AttrAgentID      = "wisp.agent.id"
	AttrAgentName    = "wisp.agent.name"
	AttrAttempt      = "wisp.attempt"
	AttrResult       = "wisp.result"
	AttrSource       = "wisp.source"
	AttrDurationUS   = "wisp.duration_us" // an agent phase's figure, as reported
	AttrMethod       = "http.request.method"
	AttrRoute        = "http.route"
	AttrStatus       = "http.response.status_code"
)
