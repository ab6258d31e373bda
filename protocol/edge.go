package protocol

// DesiredSet is the full set of functions an agent must hold and serve on
// its own (local invoke API, local triggers), sent on the control stream
// when the agent connects and after every change that a DesiredDelta does
// not carry. It replaces the previous set; the agent persists it.
type DesiredSet struct {
	Functions []DesiredFunction // 1, nested
	// Digest names the set for the DesiredDelta that may follow (version
	// 5); zero from a controller that sends no deltas. It is the
	// controller's to compute (the agent never recomputes it): see
	// DesiredDelta.
	Digest SetDigest // 2
}

// SetDigest names a desired set's contents (32 bytes; zero: unnamed). Two
// controllers computing the set from the same store give it the same
// digest.
type SetDigest [32]byte

// DesiredDelta changes the agent's desired set in place (version 5): it
// applies only to the set whose digest is Base, and leaves the one whose
// digest is Result. An agent holding another set ignores it and, unless
// it holds Result already (another controller's copy of the same change),
// asks the controller for the full set (Heartbeat.DesiredResync). Upserts
// replace or add functions by module and name; Removes delete them (a
// name the agent lacks is nothing to delete). A name appears at most once
// across both; at most MaxDeltaFunctions in all.
type DesiredDelta struct {
	Base    SetDigest         // 1
	Result  SetDigest         // 2
	Upserts []DesiredFunction // 3, nested
	Removes []FunctionName    // 4, nested
}

// FunctionName names a function of a DesiredDelta's Removes.
//
//	1 module string
//	2 name   string
type FunctionName struct {
	Module string // 1
	Name   string // 2
}

// MaxDeltaFunctions bounds a DesiredDelta's Upserts and Removes together;
// a change to more functions travels as a DesiredSet.
const MaxDeltaFunctions = 4096

// DesiredFunction is one function of a DesiredSet.
type DesiredFunction struct {
	Module      string   // 1
	Name        string   // 2
	Digest      string   // 3
	LocalTopics []string // 4: MQTT topics of its edge-local triggers
	// Env is the function's configured environment, "NAME=value" each,
	// without its secrets (version 4).
	Env []string // 5
	// AllowHosts is the function's egress allowlist for __http_request
	// (its own, or the controller's default), as the runtime takes it;
	// empty denies every host (version 4).
	AllowHosts []string // 6
	// Secrets are the values of the secrets the function's configuration
	// names, reaching its environment beside Env. They cross only this
	// QUIC session; the agent keeps them encrypted (version 4).
	Secrets []Secret // 7, nested
	// Timers are the function's edge-local timer triggers (version 4).
	Timers []Timer // 8, nested
	// KeepDigests are the code of earlier versions the agent keeps, so a
	// rollback needs no transfer (version 4).
	KeepDigests []string // 9
}

// Secret is one secret value of a DesiredFunction:
//
//	1 name   string
//	2 value  bytes
type Secret struct {
	Name  string // 1
	Value []byte // 2
}

// Timer is one timer trigger of a DesiredFunction: either a cron
// expression (five fields, UTC) or a fixed period.
//
//	1 cron      string   "*/1 * * * *"; "" when EveryMS is set
//	2 every_ms  uint     0 when Cron is set
type Timer struct {
	Cron    string // 1
	EveryMS uint64 // 2
}

func (*DesiredSet) Type() FrameType                           { return TypeDesiredSet }
func (m *DesiredSet) AppendBinary(dst []byte) ([]byte, error) { return m.Append(dst), nil }
func (m *DesiredSet) MarshalBinary() ([]byte, error)          { return m.Append(nil), nil }
func (m *DesiredSet) UnmarshalBinary(p []byte) error          { return unmarshal(m, p) }

func (m *DesiredSet) Append(dst []byte) []byte {
	e := encoder{dst}
	var sub []byte
	for _, f := range m.Functions {
		sub = f.append(sub[:0])
		e.header(1, len(sub)) // an empty function too: it decodes as one
		e.buf = append(e.buf, sub...)
	}
	e.digest(2, m.Digest)
	return e.buf
}

// Append encodes the function alone, as a DesiredSet's field 1 holds it
// (the agent stores functions and the controller hashes them in this
// form).
func (f *DesiredFunction) Append(dst []byte) []byte { return f.append(dst) }

// UnmarshalBinary decodes what Append encoded, copying what it keeps.
func (f *DesiredFunction) UnmarshalBinary(p []byte) error {
	*f = DesiredFunction{}
	return f.decode(decoder{buf: p, typ: TypeDesiredSet})
}

// digest writes a SetDigest; zero is omitted.
func (e *encoder) digest(tag uint64, d SetDigest) {
	if d != (SetDigest{}) {
		e.bytes(tag, d[:])
	}
}

// digest reads a SetDigest: exactly 32 bytes.
func (d *decoder) digest() (out SetDigest) {
	if len(d.val) != len(out) {
		d.fail("a set digest is not 32 bytes")
		return out
	}
	copy(out[:], d.val)
	return out
}

func (*DesiredDelta) Type() FrameType                           { return TypeDesiredDelta }
func (m *DesiredDelta) AppendBinary(dst []byte) ([]byte, error) { return m.Append(dst), nil }
func (m *DesiredDelta) MarshalBinary() ([]byte, error)          { return m.Append(nil), nil }
func (m *DesiredDelta) UnmarshalBinary(p []byte) error          { return unmarshal(m, p) }

func (m *DesiredDelta) Append(dst []byte) []byte {
	e := encoder{dst}
	e.digest(1, m.Base)
	e.digest(2, m.Result)
	var sub []byte
	for _, f := range m.Upserts {
		sub = f.append(sub[:0])
		e.header(3, len(sub))
		e.buf = append(e.buf, sub...)
	}
	for _, r := range m.Removes {
		se := encoder{sub[:0]}
		se.string(1, r.Module)
		se.string(2, r.Name)
		sub = se.buf
		e.header(4, len(sub))
		e.buf = append(e.buf, sub...)
	}
	return e.buf
}

func (m *DesiredDelta) decode(d decoder) error {
	named := map[FunctionName]bool{}
	name := func(n FunctionName) bool {
		switch {
		case n.Module == "" || n.Name == "":
			d.fail("a delta names a function without a module or a name")
		case named[n]:
			d.fail("a delta names a function twice")
		case len(named) == MaxDeltaFunctions:
			d.fail("more than MaxDeltaFunctions functions in a delta")
		default:
			named[n] = true
			return true
		}
		return false
	}
	for d.next() {
		switch d.tag {
		case 1:
			m.Base = d.digest()
		case 2:
			m.Result = d.digest()
		case 3:
			var f DesiredFunction
			if err := f.decode(decoder{buf: d.val, typ: d.typ}); err != nil {
				return err
			}
			if name(FunctionName{f.Module, f.Name}) {
				m.Upserts = append(m.Upserts, f)
			}
		case 4:
			var r FunctionName
			sd := decoder{buf: d.val, typ: d.typ}
			for sd.next() {
				switch sd.tag {
				case 1:
					r.Module = sd.string()
				case 2:
					r.Name = sd.string()
				}
			}
			if sd.err != nil {
				return sd.err
			}
			if name(r) {
				m.Removes = append(m.Removes, r)
			}
		}
	}
	return d.err
}

func (f *DesiredFunction) append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, f.Module)
	e.string(2, f.Name)
	e.string(3, f.Digest)
	e.strings(4, f.LocalTopics)
	e.strings(5, f.Env)
	e.strings(6, f.AllowHosts)
	var sub []byte
	for i := range f.Secrets {
		se := encoder{sub[:0]}
		se.string(1, f.Secrets[i].Name)
		se.bytes(2, f.Secrets[i].Value)
		sub = se.buf
		e.header(7, len(sub))
		e.buf = append(e.buf, sub...)
	}
	for i := range f.Timers {
		te := encoder{sub[:0]}
		te.string(1, f.Timers[i].Cron)
		te.uint(2, f.Timers[i].EveryMS)
		sub = te.buf
		e.header(8, len(sub))
		e.buf = append(e.buf, sub...)
	}
	e.strings(9, f.KeepDigests)
	return e.buf
}

func (m *DesiredSet) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			var f DesiredFunction
			if err := f.decode(decoder{buf: d.val, typ: d.typ}); err != nil {
				return err
			}
			m.Functions = append(m.Functions, f)
		case 2:
			m.Digest = d.digest()
		}
	}
	return d.err
}

func (f *DesiredFunction) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			f.Module = d.string()
		case 2:
			f.Name = d.string()
		case 3:
			f.Digest = d.string()
		case 4:
			f.LocalTopics = append(f.LocalTopics, d.string())
		case 5:
			f.Env = append(f.Env, d.string())
		case 6:
			f.AllowHosts = append(f.AllowHosts, d.string())
		case 7:
			var sec Secret
			sd := decoder{buf: d.val, typ: d.typ}
			for sd.next() {
				switch sd.tag {
				case 1:
					sec.Name = sd.string()
				case 2:
					sec.Value = sd.bytes()
				}
			}
			if sd.err != nil {
				return sd.err
			}
			f.Secrets = append(f.Secrets, sec)
		case 8:
			var tm Timer
			td := decoder{buf: d.val, typ: d.typ}
			for td.next() {
				switch td.tag {
				case 1:
					tm.Cron = td.string()
				case 2:
					tm.EveryMS = td.uint64()
				}
			}
			if td.err != nil {
				return td.err
			}
			f.Timers = append(f.Timers, tm)
		case 9:
			f.KeepDigests = append(f.KeepDigests, d.string())
		}
	}
	return d.err
}

// OutboxBatch carries activations an agent ran on its own (local invoke
// API, local triggers) to the controller, which records them (dropping ids
// it already has) and answers OutboxAck on the same stream.
type OutboxBatch struct {
	Entries []OutboxEntry // 1, nested
}

// OutboxEntry is one activation in an OutboxBatch.
type OutboxEntry struct {
	ActivationID  string    // 1
	Module        string    // 2
	Function      string    // 3
	Digest        string    // 4
	Source        string    // 5: "local-api", "local-mqtt", "local-timer"
	Code          ErrorCode // 6: OK on success
	Message       string    // 7
	Output        []byte    // 8: JSON
	StartedUnixUS uint64    // 9
	DurationUS    uint64    // 10
	Logs          []LogLine // 11 (version 3), nested
	// TraceParent is the W3C traceparent the local caller sent, if any.
	TraceParent string // 12 (version 3)
}

func (*OutboxBatch) Type() FrameType                           { return TypeOutboxBatch }
func (m *OutboxBatch) AppendBinary(dst []byte) ([]byte, error) { return m.Append(dst), nil }
func (m *OutboxBatch) MarshalBinary() ([]byte, error)          { return m.Append(nil), nil }
func (m *OutboxBatch) UnmarshalBinary(p []byte) error          { return unmarshal(m, p) }

func (m *OutboxBatch) Append(dst []byte) []byte {
	e := encoder{dst}
	var sub []byte
	for i := range m.Entries {
		sub = m.Entries[i].Append(sub[:0])
		e.header(1, len(sub)) // an empty entry too: it decodes as one
		e.buf = append(e.buf, sub...)
	}
	return e.buf
}

// Append encodes the entry alone (the agent stores entries in this form).
func (o *OutboxEntry) Append(dst []byte) []byte {
	e := encoder{dst}
	e.string(1, o.ActivationID)
	e.string(2, o.Module)
	e.string(3, o.Function)
	e.string(4, o.Digest)
	e.string(5, o.Source)
	e.uint(6, uint64(o.Code))
	e.string(7, o.Message)
	e.bytes(8, o.Output)
	e.uint(9, o.StartedUnixUS)
	e.uint(10, o.DurationUS)
	appendLogLines(&e, 11, o.Logs)
	e.string(12, o.TraceParent)
	return e.buf
}

// UnmarshalBinary decodes what Append encoded, copying the bytes it keeps.
func (o *OutboxEntry) UnmarshalBinary(p []byte) error {
	*o = OutboxEntry{}
	return o.decode(decoder{buf: p, typ: TypeOutboxBatch})
}

func (m *OutboxBatch) decode(d decoder) error {
	lines := 0
	for d.next() {
		if d.tag == 1 {
			var o OutboxEntry
			if err := o.decode(decoder{buf: d.val, typ: d.typ, alias: d.alias}); err != nil {
				return err
			}
			if lines += len(o.Logs); lines > MaxLogLines {
				d.fail("more than MaxLogLines log lines in the batch")
				break
			}
			m.Entries = append(m.Entries, o)
		}
	}
	return d.err
}

func (o *OutboxEntry) decode(d decoder) error {
	for d.next() {
		switch d.tag {
		case 1:
			o.ActivationID = d.string()
		case 2:
			o.Module = d.string()
		case 3:
			o.Function = d.string()
		case 4:
			o.Digest = d.string()
		case 5:
			o.Source = d.string()
		case 6:
			o.Code = ErrorCode(d.uint(16))
		case 7:
			o.Message = d.string()
		case 8:
			o.Output = d.bytes()
		case 9:
			o.StartedUnixUS = d.uint64()
		case 10:
			o.DurationUS = d.uint64()
		case 11:
			o.Logs = decodeLogLine(&d, o.Logs)
		case 12:
			o.TraceParent = d.string()
		}
	}
	return d.err
}

// OutboxAck lists the activation ids the controller has recorded.
type OutboxAck struct {
	IDs []string // 1
}

func (*OutboxAck) Type() FrameType                           { return TypeOutboxAck }
func (m *OutboxAck) AppendBinary(dst []byte) ([]byte, error) { return m.Append(dst), nil }
func (m *OutboxAck) MarshalBinary() ([]byte, error)          { return m.Append(nil), nil }
func (m *OutboxAck) UnmarshalBinary(p []byte) error          { return unmarshal(m, p) }

func (m *OutboxAck) Append(dst []byte) []byte {
	e := encoder{dst}
	e.strings(1, m.IDs)
	return e.buf
}

func (m *OutboxAck) decode(d decoder) error {
	for d.next() {
		if d.tag == 1 {
			m.IDs = append(m.IDs, d.string())
		}
	}
	return d.err
}
