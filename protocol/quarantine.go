package protocol

// Quarantine is the controller's full set of quarantined digests: code that
// was running when an agent died, which no agent may run until an operator
// releases it. It replaces what the agent last received from a controller
// (its own crash records not yet reported stay); the agent persists it. Sent
// on the control stream after Welcome and after every change, only to
// agents whose agreed version is 2 or more.
type Quarantine struct {
	Entries []QuarantineEntry // 1, nested
}

// QuarantineEntry is one quarantined digest, in a Quarantine message or in
// Hello.Crashed.
type QuarantineEntry struct {
	Digest      string // 1, "sha256:<hex>"
	Reason      string // 2, for people
	SinceUnixMS uint64 // 3, when the agent died running it
}

func (*Quarantine) Type() FrameType                           { return TypeQuarantine }
func (m *Quarantine) AppendBinary(dst []byte) ([]byte, error) { return m.Append(dst), nil }
func (m *Quarantine) MarshalBinary() ([]byte, error)          { return m.Append(nil), nil }
func (m *Quarantine) UnmarshalBinary(p []byte) error          { return unmarshal(m, p) }

func (m *Quarantine) Append(dst []byte) []byte {
	e := encoder{dst}
	appendQuarantineEntries(&e, 1, m.Entries)
	return e.buf
}

func (m *Quarantine) decode(d decoder) error {
	for d.next() {
		if d.tag == 1 {
			m.Entries = decodeQuarantineEntry(&d, m.Entries)
		}
	}
	return d.err
}

// appendQuarantineEntries writes es as a repeated nested field.
func appendQuarantineEntries(e *encoder, tag uint64, es []QuarantineEntry) {
	if len(es) == 0 {
		return
	}
	var sub []byte
	for i := range es {
		se := encoder{sub[:0]}
		se.string(1, es[i].Digest)
		se.string(2, es[i].Reason)
		se.uint(3, es[i].SinceUnixMS)
		sub = se.buf
		e.header(tag, len(sub))
		e.buf = append(e.buf, sub...)
	}
}

// decodeQuarantineEntry decodes the current field of d as one nested entry
// and appends it to es; a malformed entry is recorded in d.
func decodeQuarantineEntry(d *decoder, es []QuarantineEntry) []QuarantineEntry {
	var q QuarantineEntry
	sd := decoder{buf: d.val, typ: d.typ}
	for sd.next() {
		switch sd.tag {
		case 1:
			q.Digest = sd.string()
		case 2:
			q.Reason = sd.string()
		case 3:
			q.SinceUnixMS = sd.uint64()
		}
	}
	if sd.err != nil {
		if d.err == nil {
			d.err = sd.err
		}
		return es
	}
	return append(es, q)
}
