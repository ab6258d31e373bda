// Package status is what `wisp-agent status` shows: an agent's links to its
// controllers, its desired set, its outbox backlog and its last
// activations with their logs. A running agent builds a Report
// (agent/node) and serves it on its local API (GET /v1/status, with the
// local token); a stopped agent's data dir gives a smaller one (no links,
// and the outbox's undelivered activations instead of the in-memory ring).
//
// Recent is the in-memory ring of an agent's last activations, fed by the
// executor on every path (controller-dispatched, local API, local MQTT).
// It is bounded in activations and in log bytes per activation, so it
// costs at most a few hundred KiB however much functions print.
//
// It holds types and the ring only: no I/O, no HTTP. It must never import
// controller packages.
package status

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wispfn/wisp/protocol"
)

// Where a Report came from.
const (
	FromAPI     = "api"      // the running agent's local API
	FromDataDir = "data-dir" // a stopped agent's data dir
)

// Source of an activation the controller dispatched (local ones carry
// agent/activation's "local-api", "local-mqtt" and "local-timer").
const SourceController = "controller"

// Report is an agent's status.
type Report struct {
	From    string     `json:"from"`
	AgentID string     `json:"agent_id"` // "" until the first join
	DataDir string     `json:"data_dir,omitempty"`
	Ready   *Readiness `json:"ready,omitempty"` // a running agent's /readyz verdict
	// Links are the controller links (a running agent only).
	Links   []Link     `json:"links"`
	Desired []Function `json:"desired"`
	Outbox  Outbox     `json:"outbox"`
	// Recent are the last activations, newest first: the ring of a
	// running agent, the outbox's undelivered ones from a data dir.
	Recent []Activation `json:"recent"`
}

// Readiness is the agent's /readyz verdict.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Link is one controller link: one per address a controller address
// given to the agent resolves to.
type Link struct {
	// Controller is the controller's address as given (--controllers).
	Controller string `json:"controller"`
	// Address is the address dialled, when the one given is a host name
	// (it may resolve to several, one link each).
	Address string `json:"address,omitempty"`
	// ControllerID is the controller process's id, from its last Welcome.
	ControllerID string `json:"controller_id,omitempty"`
	Connected    bool   `json:"connected"`
	// Since is when the link last came up (Connected) or went down.
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Note says what a link that is down on purpose waits for (another
	// link's join, another link's session with the same controller).
	Note string `json:"note,omitempty"`
	// DrainsOutbox: this link sends the outbox (one link at a time does).
	DrainsOutbox bool `json:"drains_outbox,omitempty"`
}

// Function is one function of the desired set.
type Function struct {
	Module      string   `json:"module"`
	Name        string   `json:"name"`
	Digest      string   `json:"digest"`
	LocalTopics []string `json:"local_topics,omitempty"`
	// LocalTimers are its edge-local timers: "cron <expr>" or "every <duration>".
	LocalTimers []string `json:"local_timers,omitempty"`
	HasCode     bool     `json:"has_code"`
}

// Outbox is the backlog of local activations not yet recorded by a
// controller.
type Outbox struct {
	Count int `json:"count"`
	// Oldest is when the oldest waiting activation started.
	Oldest time.Time `json:"oldest,omitzero"`
	// Bytes is the encoded size of the waiting entries.
	Bytes int64 `json:"bytes"`
}

// OldestAge is how long the oldest entry has waited at now (0: none).
func (o Outbox) OldestAge(now time.Time) time.Duration {
	if o.Oldest.IsZero() {
		return 0
	}
	return now.Sub(o.Oldest)
}

// Activation is one activation: what the ring keeps and what the outbox
// entries of a data dir show.
type Activation struct {
	ID       string
	Module   string
	Function string
	Source   string // SourceController, "local-api", "local-mqtt", "local-timer"
	// Status is "ok" or the error code's name (protocol.ErrorCode).
	Status   string
	Started  time.Time
	Duration time.Duration
	Logs     []protocol.LogLine
}

// activationJSON is Activation on the wire: times and streams by name.
type activationJSON struct {
	ID         string    `json:"id"`
	Module     string    `json:"module"`
	Function   string    `json:"function"`
	Source     string    `json:"source"`
	Status     string    `json:"status"`
	Started    time.Time `json:"started"`
	DurationUS int64     `json:"duration_us"`
	Logs       []logJSON `json:"logs"`
}

type logJSON struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Text   string    `json:"text"`
}

// MarshalJSON shows the log lines with their time and stream by name.
func (a Activation) MarshalJSON() ([]byte, error) {
	j := activationJSON{ID: a.ID, Module: a.Module, Function: a.Function, Source: a.Source, Status: a.Status,
		Started: a.Started.UTC(), DurationUS: a.Duration.Microseconds(), Logs: make([]logJSON, len(a.Logs))}
	for i, l := range a.Logs {
		j.Logs[i] = logJSON{Time: time.UnixMicro(int64(l.UnixUS)).UTC(), Stream: l.Stream.String(), Text: l.Text}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (a *Activation) UnmarshalJSON(b []byte) error {
	var j activationJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*a = Activation{ID: j.ID, Module: j.Module, Function: j.Function, Source: j.Source, Status: j.Status,
		Started: j.Started, Duration: time.Duration(j.DurationUS) * time.Microsecond}
	for _, l := range j.Logs {
		a.Logs = append(a.Logs, protocol.LogLine{UnixUS: uint64(l.Time.UnixMicro()), Stream: streamOf(l.Stream), Text: l.Text})
	}
	return nil
}

func streamOf(name string) protocol.LogStream {
	for s := range protocol.LogStream(3) {
		if s.String() == name {
			return s
		}
	}
	if n, err := strconv.ParseUint(name[min(len(name), len("stream")):], 10, 8); err == nil {
		return protocol.LogStream(n)
	}
	return protocol.StreamConsole
}

// StatusOf names an activation's outcome: "ok" or the code's name.
func StatusOf(code protocol.ErrorCode) string {
	if code == protocol.OK {
		return "ok"
	}
	return code.String()
}

// Bounds of the ring.
const (
	// DefaultRecent is how many activations a ring keeps.
	DefaultRecent = 20
	// MaxLogLines and MaxLogBytes bound the log lines the ring keeps per
	// activation (the text's bytes); what is beyond is replaced by one
	// marker line of StreamPlatform.
	MaxLogLines = 50
	MaxLogBytes = 8 << 10
)

// Recent is a bounded ring of the last activations. Safe for concurrent
// use; the zero value is not usable, see NewRecent.
type Recent struct {
	mu   sync.Mutex
	buf  []Activation
	next int // where the next Add goes
	n    int // how many are held
}

// NewRecent returns a ring of n activations (DefaultRecent when n <= 0).
func NewRecent(n int) *Recent {
	if n <= 0 {
		n = DefaultRecent
	}
	return &Recent{buf: make([]Activation, n)}
}

// Add keeps a, dropping the oldest when the ring is full. It copies the
// log lines it keeps (at most MaxLogLines and MaxLogBytes of text), so the
// caller may reuse a.Logs.
func (r *Recent) Add(a Activation) {
	a.Logs = boundLogs(a.Logs, a.Started)
	r.mu.Lock()
	r.buf[r.next] = a
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
	r.mu.Unlock()
}

// List returns the activations held, newest first.
func (r *Recent) List() []Activation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Activation, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// boundLogs copies the lines that fit the bounds and adds a marker for the
// rest.
func boundLogs(lines []protocol.LogLine, started time.Time) []protocol.LogLine {
	if len(lines) == 0 {
		return nil
	}
	out := make([]protocol.LogLine, 0, min(len(lines), MaxLogLines+1))
	size := 0
	for i, l := range lines {
		if i == MaxLogLines || size+len(l.Text) > MaxLogBytes {
			at := l.UnixUS
			if at == 0 {
				at = uint64(started.UnixMicro())
			}
			out = append(out, protocol.LogLine{UnixUS: at, Stream: protocol.StreamPlatform,
				Text: strconv.Itoa(len(lines)-i) + " more log lines not kept by wisp-agent status"})
			break
		}
		size += len(l.Text)
		out = append(out, protocol.LogLine{UnixUS: l.UnixUS, Stream: l.Stream, Text: strings.Clone(l.Text)})
	}
	return out
}
