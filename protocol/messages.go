package protocol

// Each message struct lists its fields in tag order; the comment after a
// field is its tag. Layouts are documented on the frame type constants.
//
// Every message has the same methods: Type; Append, which appends the
// payload and cannot fail; AppendBinary and MarshalBinary, for the
// encoding.BinaryAppender and encoding.BinaryMarshaler interfaces; and
// UnmarshalBinary, which resets the message, decodes a payload, and copies
// the bytes it keeps.

// Hello is the agent's first frame on the control stream.
type Hello struct {
	AgentID         string   // 1, empty on first contact
	Name            string   // 2
	OS              string   // 3
	Arch            string   // 4
	Engine          string   // 5, "compiler" or "interpreter"
	Labels          []string // 6, "key=value"
	MemTotalBytes   uint64   // 7
	MemAvailBytes   uint64   // 8
	CPUs            uint64   // 9
	Inflight        uint64   // 10
	Digests         []string // 11, "sha256:<hex>"
	AgentVersion    string   // 12
	JoinSecret      []byte   // 13, first contact only
	Credential      []byte   // 14, later contacts
	ProtocolVersion uint64   // 15
	// Crashed lists the digests that were running when this agent last
	// died and that it has not yet seen recorded by a controller (see
	// Welcome.CrashesRecorded). Since version 2.
	Crashed []QuarantineEntry // 16, nested
}

func (*Hello) Type() FrameType                           { return TypeHello }
func (h *Hello) AppendBinary(dst []byte) ([]byte, error) { return h.Append(dst), nil }
func (h *Hello) MarshalBinary() ([]byte, error)          { return h.Append(nil), nil }
func (h *Hello) UnmarshalBinary(p []byte) error          { return unmarshal(h, p) }

func (h *Hello) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, h.AgentID)
	e.string(2, h.Name)
	e.string(3, h.OS)
	e.string(4, h.Arch)
	e.string(5, h.Engine)
	e.strings(6, h.Labels)
	e.uint(7, h.MemTotalBytes)
	e.uint(8, h.MemAvailBytes)
	e.uint(9, h.CPUs)
	e.uint(10, h.Inflight)
	e.strings(11, h.Digests)
	e.string(12, h.AgentVersion)
	e.bytes(13, h.JoinSecret)
	e.bytes(14, h.Credential)
	e.uint(15, h.ProtocolVersion)
	appendQuarantineEntries(&e, 16, h.Crashed)
	return e.buf
}

func (h *Hello) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			h.AgentID = d.string()
		case 2:
			h.Name = d.string()
		case 3:
			h.OS = d.string()
		case 4:
			h.Arch = d.string()
		case 5:
			h.Engine = d.string()
		case 6:
			h.Labels = append(h.Labels, d.string())
		case 7:
			h.MemTotalBytes = d.uint64()
		case 8:
			h.MemAvailBytes = d.uint64()
		case 9:
			h.CPUs = d.uint64()
		case 10:
			h.Inflight = d.uint64()
		case 11:
			h.Digests = append(h.Digests, d.string())
		case 12:
			h.AgentVersion = d.string()
		case 13:
			h.JoinSecret = d.bytes()
		case 14:
			h.Credential = d.bytes()
		case 15:
			h.ProtocolVersion = d.uint64()
		case 16:
			h.Crashed = decodeQuarantineEntry(&d, h.Crashed)
		}
	}
	return d.err
}

// Welcome is the controller's answer to an accepted Hello.
type Welcome struct {
	AgentID             string // 1
	Credential          []byte // 2, non-empty only when newly issued
	ControllerID        string // 3
	HeartbeatIntervalMS uint64 // 4
	ProtocolVersion     uint64 // 5
	// CrashesRecorded: the controller has stored every Hello.Crashed entry,
	// so the agent may stop reporting them. Since version 2.
	CrashesRecorded bool // 6
}

func (*Welcome) Type() FrameType                           { return TypeWelcome }
func (w *Welcome) AppendBinary(dst []byte) ([]byte, error) { return w.Append(dst), nil }
func (w *Welcome) MarshalBinary() ([]byte, error)          { return w.Append(nil), nil }
func (w *Welcome) UnmarshalBinary(p []byte) error          { return unmarshal(w, p) }

func (w *Welcome) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, w.AgentID)
	e.bytes(2, w.Credential)
	e.string(3, w.ControllerID)
	e.uint(4, w.HeartbeatIntervalMS)
	e.uint(5, w.ProtocolVersion)
	e.bool(6, w.CrashesRecorded)
	return e.buf
}

func (w *Welcome) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			w.AgentID = d.string()
		case 2:
			w.Credential = d.bytes()
		case 3:
			w.ControllerID = d.string()
		case 4:
			w.HeartbeatIntervalMS = d.uint64()
		case 5:
			w.ProtocolVersion = d.uint64()
		case 6:
			w.CrashesRecorded = d.bool()
		}
	}
	return d.err
}

// Heartbeat reports the agent's load on the control stream.
type Heartbeat struct {
	MemAvailBytes    uint64 // 1
	Inflight         uint64 // 2
	InvocationsTotal uint64 // 3
	SentUnixMS       uint64 // 4
	// DesiredResync asks the controller for its full desired set: a
	// DesiredDelta of its did not apply to the set the agent holds
	// (version 5). Sent at once, not at the next load report.
	DesiredResync bool // 5
}

func (*Heartbeat) Type() FrameType                           { return TypeHeartbeat }
func (h *Heartbeat) AppendBinary(dst []byte) ([]byte, error) { return h.Append(dst), nil }
func (h *Heartbeat) MarshalBinary() ([]byte, error)          { return h.Append(nil), nil }
func (h *Heartbeat) UnmarshalBinary(p []byte) error          { return unmarshal(h, p) }

func (h *Heartbeat) Append(dst []byte) []byte {
	e := encoder{dst}
	e.uint(1, h.MemAvailBytes)
	e.uint(2, h.Inflight)
	e.uint(3, h.InvocationsTotal)
	e.uint(4, h.SentUnixMS)
	e.bool(5, h.DesiredResync)
	return e.buf
}

func (h *Heartbeat) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			h.MemAvailBytes = d.uint64()
		case 2:
			h.Inflight = d.uint64()
		case 3:
			h.InvocationsTotal = d.uint64()
		case 4:
			h.SentUnixMS = d.uint64()
		case 5:
			h.DesiredResync = d.bool()
		}
	}
	return d.err
}

// Invoke asks the agent for one function call.
type Invoke struct {
	ActivationID     string   // 1
	Module           string   // 2
	Function         string   // 3
	Digest           string   // 4, "sha256:<hex>"
	Args             []byte   // 5, JSON
	DeadlineUnixMS   uint64   // 6
	AllowedHosts     []string // 7
	TimeoutMS        uint64   // 8, 0 = agent default
	MemoryLimitBytes uint64   // 9, 0 = agent default
	// TraceParent is the W3C traceparent of the span the controller
	// dispatched under ("" = not traced); the agent echoes it in Result.
	TraceParent string // 10 (version 3)
	// Env is the function's environment, "NAME=value" each: its configured
	// env and the values of the secrets it names (version 4).
	Env []string // 11
}

func (*Invoke) Type() FrameType                           { return TypeInvoke }
func (v *Invoke) AppendBinary(dst []byte) ([]byte, error) { return v.Append(dst), nil }
func (v *Invoke) MarshalBinary() ([]byte, error)          { return v.Append(nil), nil }
func (v *Invoke) UnmarshalBinary(p []byte) error          { return unmarshal(v, p) }

func (v *Invoke) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, v.ActivationID)
	e.string(2, v.Module)
	e.string(3, v.Function)
	e.string(4, v.Digest)
	e.bytes(5, v.Args)
	e.uint(6, v.DeadlineUnixMS)
	e.strings(7, v.AllowedHosts)
	e.uint(8, v.TimeoutMS)
	e.uint(9, v.MemoryLimitBytes)
	e.string(10, v.TraceParent)
	e.strings(11, v.Env)
	return e.buf
}

func (v *Invoke) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			v.ActivationID = d.string()
		case 2:
			v.Module = d.string()
		case 3:
			v.Function = d.string()
		case 4:
			v.Digest = d.string()
		case 5:
			v.Args = d.bytes()
		case 6:
			v.DeadlineUnixMS = d.uint64()
		case 7:
			v.AllowedHosts = append(v.AllowedHosts, d.string())
		case 8:
			v.TimeoutMS = d.uint64()
		case 9:
			v.MemoryLimitBytes = d.uint64()
		case 10:
			v.TraceParent = d.string()
		case 11:
			v.Env = append(v.Env, d.string())
		}
	}
	return d.err
}

// Started tells the controller that the agent has an Invoke and runs it.
type Started struct {
	ActivationID string // 1
}

func (*Started) Type() FrameType                           { return TypeStarted }
func (m *Started) AppendBinary(dst []byte) ([]byte, error) { return m.Append(dst), nil }
func (m *Started) MarshalBinary() ([]byte, error)          { return m.Append(nil), nil }
func (m *Started) UnmarshalBinary(p []byte) error          { return unmarshal(m, p) }

func (m *Started) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, m.ActivationID)
	return e.buf
}

func (m *Started) decode(d decoder) error {
	for d.next() {
		if d.tag == 1 {
			m.ActivationID = d.string()
		}
	}
	return d.err
}

// NeedCode asks, on an invocation stream, for the code of the Invoke.
type NeedCode struct {
	Digest string // 1
}

func (*NeedCode) Type() FrameType                           { return TypeNeedCode }
func (n *NeedCode) AppendBinary(dst []byte) ([]byte, error) { return n.Append(dst), nil }
func (n *NeedCode) MarshalBinary() ([]byte, error)          { return n.Append(nil), nil }
func (n *NeedCode) UnmarshalBinary(p []byte) error          { return unmarshal(n, p) }

func (n *NeedCode) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, n.Digest)
	return e.buf
}

func (n *NeedCode) decode(d decoder) error {
	for d.next() {
		if d.tag == 1 {
			n.Digest = d.string()
		}
	}
	return d.err
}

// Code carries a wasm module and its digest.
type Code struct {
	Digest string // 1, "sha256:<hex>" of Wasm
	Wasm   []byte // 2
}

func (*Code) Type() FrameType                           { return TypeCode }
func (c *Code) AppendBinary(dst []byte) ([]byte, error) { return c.Append(dst), nil }
func (c *Code) MarshalBinary() ([]byte, error)          { return c.Append(nil), nil }
func (c *Code) UnmarshalBinary(p []byte) error          { return unmarshal(c, p) }

func (c *Code) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, c.Digest)
	e.bytes(2, c.Wasm)
	return e.buf
}

func (c *Code) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			c.Digest = d.string()
		case 2:
			c.Wasm = d.bytes()
		}
	}
	return d.err
}

// Result reports the outcome of an Invoke. Durations are in microseconds.
type Result struct {
	ActivationID string    // 1
	Code         ErrorCode // 2, OK on success
	Message      string    // 3
	Output       []byte    // 4, JSON
	// Logs are the lines the function wrote, in order (tag 14, version 3;
	// a version 1–2 agent sends bare strings in tag 5, read here as
	// console lines without a time).
	Logs          []LogLine // 14 (5)
	QueueUS       uint64    // 6
	TransferUS    uint64    // 7
	CompileUS     uint64    // 8
	InstantiateUS uint64    // 9
	RunUS         uint64    // 10
	Compiled      bool      // 11, this call compiled the module
	DiskCacheHit  bool      // 12
	ExitCode      uint32    // 13
	TraceParent   string    // 15 (version 3): Invoke.TraceParent, echoed
}

func (*Result) Type() FrameType                           { return TypeResult }
func (r *Result) AppendBinary(dst []byte) ([]byte, error) { return r.Append(dst), nil }
func (r *Result) MarshalBinary() ([]byte, error)          { return r.Append(nil), nil }
func (r *Result) UnmarshalBinary(p []byte) error          { return unmarshal(r, p) }

// Err returns nil for a successful Result, else an [*Error] with its code and
// message.
func (r *Result) Err() error {
	if r.Code == OK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

func (r *Result) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, r.ActivationID)
	e.uint(2, uint64(r.Code))
	e.string(3, r.Message)
	e.bytes(4, r.Output)
	e.uint(6, r.QueueUS)
	e.uint(7, r.TransferUS)
	e.uint(8, r.CompileUS)
	e.uint(9, r.InstantiateUS)
	e.uint(10, r.RunUS)
	e.bool(11, r.Compiled)
	e.bool(12, r.DiskCacheHit)
	e.uint(13, uint64(r.ExitCode))
	appendLogLines(&e, 14, r.Logs)
	e.string(15, r.TraceParent)
	return e.buf
}

func (r *Result) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			r.ActivationID = d.string()
		case 2:
			r.Code = ErrorCode(d.uint(16))
		case 3:
			r.Message = d.string()
		case 4:
			r.Output = d.bytes()
		case 5:
			r.Logs = append(r.Logs, LogLine{Stream: StreamConsole, Text: d.string()})
		case 6:
			r.QueueUS = d.uint64()
		case 7:
			r.TransferUS = d.uint64()
		case 8:
			r.CompileUS = d.uint64()
		case 9:
			r.InstantiateUS = d.uint64()
		case 10:
			r.RunUS = d.uint64()
		case 11:
			r.Compiled = d.bool()
		case 12:
			r.DiskCacheHit = d.bool()
		case 13:
			r.ExitCode = uint32(d.uint(32))
		case 14:
			r.Logs = decodeLogLine(&d, r.Logs)
		case 15:
			r.TraceParent = d.string()
		}
	}
	return d.err
}

// Ack acknowledges a request, such as a code push (ID is then the digest).
type Ack struct {
	ID string // 1
}

func (*Ack) Type() FrameType                           { return TypeAck }
func (a *Ack) AppendBinary(dst []byte) ([]byte, error) { return a.Append(dst), nil }
func (a *Ack) MarshalBinary() ([]byte, error)          { return a.Append(nil), nil }
func (a *Ack) UnmarshalBinary(p []byte) error          { return unmarshal(a, p) }

func (a *Ack) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, a.ID)
	return e.buf
}

func (a *Ack) decode(d decoder) error {
	for d.next() {
		if d.tag == 1 {
			a.ID = d.string()
		}
	}
	return d.err
}

// Drop tells the agent to forget cached code.
type Drop struct {
	Digests []string // 1
}

func (*Drop) Type() FrameType                            { return TypeDrop }
func (dr *Drop) AppendBinary(dst []byte) ([]byte, error) { return dr.Append(dst), nil }
func (dr *Drop) MarshalBinary() ([]byte, error)          { return dr.Append(nil), nil }
func (dr *Drop) UnmarshalBinary(p []byte) error          { return unmarshal(dr, p) }

func (dr *Drop) Append(dst []byte) []byte {
	e := encoder{dst}
	e.strings(1, dr.Digests)
	return e.buf
}

func (dr *Drop) decode(d decoder) error {
	for d.next() {
		if d.tag == 1 {
			dr.Digests = append(dr.Digests, d.string())
		}
	}
	return d.err
}

// Ping asks for a Pong echoing its nonce and payload; the payload lets the
// sender measure round trips of a given size.
type Ping struct {
	Nonce   uint64 // 1
	Payload []byte // 2
}

func (*Ping) Type() FrameType                           { return TypePing }
func (p *Ping) AppendBinary(dst []byte) ([]byte, error) { return p.Append(dst), nil }
func (p *Ping) MarshalBinary() ([]byte, error)          { return p.Append(nil), nil }
func (p *Ping) UnmarshalBinary(b []byte) error          { return unmarshal(p, b) }
func (p *Ping) Append(dst []byte) []byte                { return appendPing(dst, p.Nonce, p.Payload) }
func (p *Ping) decode(d decoder) error                  { return decodePing(&d, &p.Nonce, &p.Payload) }

// Pong answers a Ping with the same nonce and payload.
type Pong struct {
	Nonce   uint64 // 1
	Payload []byte // 2
}

func (*Pong) Type() FrameType                           { return TypePong }
func (p *Pong) AppendBinary(dst []byte) ([]byte, error) { return p.Append(dst), nil }
func (p *Pong) MarshalBinary() ([]byte, error)          { return p.Append(nil), nil }
func (p *Pong) UnmarshalBinary(b []byte) error          { return unmarshal(p, b) }
func (p *Pong) Append(dst []byte) []byte                { return appendPing(dst, p.Nonce, p.Payload) }
func (p *Pong) decode(d decoder) error                  { return decodePing(&d, &p.Nonce, &p.Payload) }

func appendPing(dst []byte, nonce uint64, payload []byte) []byte {
	e := encoder{dst}
	e.uint(1, nonce)
	e.bytes(2, payload)
	return e.buf
}

func decodePing(d *decoder, nonce *uint64, payload *[]byte) error {
	for d.next() {
		switch d.tag {
		case 1:
			*nonce = d.uint64()
		case 2:
			*payload = d.bytes()
		}
	}
	return d.err
}
