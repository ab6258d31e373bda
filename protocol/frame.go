package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
)

// MaxFrameSize is the largest payload a frame may carry: 64 MiB, enough for
// any wasm module Wisp accepts plus its envelope.
const MaxFrameSize = 64 << 20

// frameHeaderLen is the size of a frame header: type, then uint32 length.
const frameHeaderLen = 1 + 4

// FrameType is the first byte of a frame. Its range says whether a receiver
// that does not know it may ignore it; see [FrameType.Optional].
type FrameType uint8

// Frame types. Each comment gives the message's fields as
// "tag name encoding"; see the package documentation for the encodings.
const (
	// TypeHello (agent→controller, first frame of the control stream)
	// announces the agent; see [Hello].
	//
	//	 1 agent_id           string    empty on first contact
	//	 2 name               string    host name, for people
	//	 3 os                 string    GOOS
	//	 4 arch               string    GOARCH
	//	 5 engine             string    "compiler" or "interpreter"
	//	 6 labels             string*   repeated, "key=value"
	//	 7 mem_total_bytes    uint
	//	 8 mem_avail_bytes    uint
	//	 9 cpus               uint
	//	10 inflight           uint      invocations running now
	//	11 digests            string*   repeated, "sha256:<hex>" of cached code
	//	12 agent_version      string
	//	13 join_secret        bytes     first contact only
	//	14 credential         bytes     later contacts
	//	15 protocol_version   uint      the agent's Version
	//	16 crashed            nested*   since version 2: QuarantineEntry
	//	                                (1 digest, 2 reason, 3 since_unix_ms
	//	                                uint): code that was running when
	//	                                the agent died, not yet recorded
	TypeHello FrameType = 0x01

	// TypeWelcome (controller→agent, control stream) accepts a Hello; see
	// [Welcome].
	//
	//	1 agent_id               string
	//	2 credential             bytes    non-empty only when newly issued
	//	3 controller_id          string
	//	4 heartbeat_interval_ms  uint     the longest time between two
	//	                                  Heartbeats (load reports)
	//	5 protocol_version       uint     the controller's Version
	//	6 crashes_recorded       bool     since version 2: every Hello.crashed
	//	                                  entry is stored by the controller
	TypeWelcome FrameType = 0x02

	// TypeHeartbeat (agent→controller, control stream) reports the agent's
	// load: at least every Welcome.heartbeat_interval_ms, and sooner when
	// it changed; see [Heartbeat].
	//
	//	1 mem_avail_bytes    uint
	//	2 inflight           uint
	//	3 invocations_total  uint    since the agent started
	//	4 sent_unix_ms       uint
	TypeHeartbeat FrameType = 0x03

	// TypeInvoke (controller→agent, first frame of an invocation stream)
	// asks for one function call; see [Invoke].
	//
	//	1 activation_id       string
	//	2 module              string
	//	3 function            string
	//	4 digest              string    "sha256:<hex>" of the code
	//	5 args                bytes     JSON
	//	6 deadline_unix_ms    uint
	//	7 allowed_hosts       string*   repeated
	//	8 timeout_ms          uint      0 = agent default
	//	9 memory_limit_bytes  uint      0 = agent default
	//	10 trace_parent       string    W3C traceparent (version 3)
	//	11 env                string*   "NAME=value", secrets included (version 4)
	TypeInvoke FrameType = 0x04

	// TypeNeedCode (agent→controller, invocation stream) asks for the code
	// of an Invoke whose digest the agent does not hold; see [NeedCode].
	//
	//	1 digest  string
	TypeNeedCode FrameType = 0x05

	// TypeCode (controller→agent, invocation stream after NeedCode, or first
	// frame of a code push stream) carries a module; see [Code].
	//
	//	1 digest  string   "sha256:<hex>" of wasm
	//	2 wasm    bytes
	TypeCode FrameType = 0x06

	// TypeResult (agent→controller, last frame of an invocation stream)
	// reports the outcome of an Invoke; see [Result].
	//
	//	 1 activation_id   string
	//	 2 code            uint      ErrorCode, 0 = OK
	//	 3 message         string
	//	 4 output          bytes     JSON
	//	 5 logs            string*   repeated; written up to version 2, read as console lines
	//	 6 queue_us        uint
	//	 7 transfer_us     uint
	//	 8 compile_us      uint
	//	 9 instantiate_us  uint
	//	10 run_us          uint
	//	11 compiled        bool      this call compiled the module
	//	12 disk_cache_hit  bool
	//	13 exit_code       uint      WASI exit status (uint32)
	//	14 log_lines       LogLine*  repeated, nested (version 3): see [LogLine]
	//	15 trace_parent    string    Invoke.trace_parent, echoed (version 3)
	TypeResult FrameType = 0x07

	// TypeError (either way, any stream) refuses a request; see [Error].
	//
	//	1 code     uint    ErrorCode (uint16)
	//	2 message  string
	TypeError FrameType = 0x08

	// TypeAck (either way) acknowledges a request, such as a code push; see
	// [Ack].
	//
	//	1 id  string   what is acknowledged, e.g. a digest
	TypeAck FrameType = 0x09

	// TypeDrop (controller→agent, control stream) tells the agent to forget
	// cached code; no answer. See [Drop].
	//
	//	1 digests  string*  repeated
	TypeDrop FrameType = 0x0A

	// TypePing (either way, control stream or a fresh stream) asks for a
	// Pong with the same fields; see [Ping].
	//
	//	1 nonce    uint
	//	2 payload  bytes
	TypePing FrameType = 0x0B

	// TypePong answers a Ping, echoing its nonce and payload; see [Pong].
	//
	//	1 nonce    uint
	//	2 payload  bytes
	TypePong FrameType = 0x0C

	// TypeStarted is the agent's first answer on an invocation stream: it
	// has the Invoke and is running it (or fetching its code). It proves
	// the agent alive, nothing more: an agent may die running the function
	// before its Started leaves, so a controller that gets no Started
	// within its start timeout must not assume the function did not run
	// (see "Delivery" in the package doc). See [Started].
	//
	//	1 activation_id string
	TypeStarted FrameType = 0x0D

	// TypeQuarantine (controller→agent, control stream; since version 2,
	// sent only when the agreed version is 2 or more) is the full set of
	// quarantined digests, which no agent may run; it replaces the set the
	// agent last received. See [Quarantine].
	//
	//	1 entries (repeated, nested QuarantineEntry:
	//	    1 digest, 2 reason, 3 since_unix_ms uint)
	TypeQuarantine FrameType = 0x0E

	// 0x0F: unassigned core type.

	// TypeDesiredSet (controller -> agent, control stream) is the full set
	// of functions the agent must hold and serve on its own; it replaces
	// the previous one. See [DesiredSet].
	//
	//	1 functions (repeated, nested DesiredFunction:
	//	    1 module, 2 name, 3 digest, 4 local_topics (repeated string),
	//	    version 4: 5 env (repeated "NAME=value"), 6 allow_hosts (repeated),
	//	    7 secrets (repeated nested Secret: 1 name, 2 value bytes),
	//	    8 timers (repeated nested Timer: 1 cron, 2 every_ms uint),
	//	    9 keep_digests (repeated string))
	//	2 digest (32 bytes, version 5; absent: unnamed)
	TypeDesiredSet FrameType = 0x10

	// TypeOutboxBatch (agent -> controller, on a stream the agent opens)
	// carries activations the agent ran on its own. See [OutboxBatch].
	//
	//	1 entries (repeated, nested OutboxEntry:
	//	    1 activation_id, 2 module, 3 function, 4 digest, 5 source,
	//	    6 code uint, 7 message, 8 output bytes, 9 started_unix_us uint,
	//	    10 duration_us uint, 11 log_lines (repeated nested LogLine,
	//	    version 3), 12 trace_parent string (version 3))
	TypeOutboxBatch FrameType = 0x11

	// TypeOutboxAck (controller -> agent, same stream) lists the
	// activation ids the controller has recorded; only those may leave the
	// agent's outbox.
	//
	//	1 ids (repeated string)
	TypeOutboxAck FrameType = 0x12

	// TypeDesiredDelta (controller -> agent, control stream; version 5)
	// changes the desired set named base into the one named result. See
	// [DesiredDelta].
	//
	//	1 base (32 bytes)
	//	2 result (32 bytes)
	//	3 upserts (repeated, nested DesiredFunction as in DesiredSet)
	//	4 removes (repeated, nested FunctionName: 1 module, 2 name)
	TypeDesiredDelta FrameType = 0x13

	// 0x14-0x1F: unassigned, kept for the edge features; version 1
	// treats them as unknown core types.
)

// Optional reports whether a receiver that does not know t may skip the
// frame (0x40–0x7F). Unknown types outside that range are errors.
func (t FrameType) Optional() bool { return t >= 0x40 && t <= 0x7F }

var typeNames = [...]string{
	TypeHello:        "Hello",
	TypeWelcome:      "Welcome",
	TypeHeartbeat:    "Heartbeat",
	TypeInvoke:       "Invoke",
	TypeNeedCode:     "NeedCode",
	TypeCode:         "Code",
	TypeResult:       "Result",
	TypeError:        "Error",
	TypeAck:          "Ack",
	TypeDrop:         "Drop",
	TypePing:         "Ping",
	TypePong:         "Pong",
	TypeStarted:      "Started",
	TypeDesiredSet:   "DesiredSet",
	TypeOutboxBatch:  "OutboxBatch",
	TypeOutboxAck:    "OutboxAck",
	TypeDesiredDelta: "DesiredDelta",
	TypeQuarantine:   "Quarantine",
}

func (t FrameType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("FrameType(0x%02x)", uint8(t))
}

// Frame is one frame as it travels: its type and its undecoded payload.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// FrameTooLargeError reports a frame whose payload exceeds the limit. It is
// returned from the header alone, before the payload is read or allocated.
// errors.Is(err, ErrFrameTooLarge) matches it.
type FrameTooLargeError struct {
	Type FrameType
	Size uint64 // declared (reading) or actual (writing) payload length
	Max  uint32 // the limit in force
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("protocol: %v frame of %d bytes exceeds the limit of %d", e.Type, e.Size, e.Max)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// readChunk is the size past which ReadFrame grows the payload buffer as
// bytes arrive instead of trusting the declared length up front.
const readChunk = 1 << 20

// limit returns the effective payload limit for a max argument.
func limit(max uint32) uint32 {
	if max == 0 || max > MaxFrameSize {
		return MaxFrameSize
	}
	return max
}

// ReadFrame reads one frame from r. A payload longer than max bytes is
// refused with a [*FrameTooLargeError] before anything is allocated for it;
// max 0 (or anything above MaxFrameSize) means MaxFrameSize.
//
// # Errors
//
// io.EOF means r ended cleanly at a frame boundary; a frame cut short gives
// an error matching io.ErrUnexpectedEOF. Other errors come from r.
//
// # Notes
//
// If r is an io.ByteReader (a *bufio.Reader, say) reading the header
// allocates nothing; the payload is a fresh slice the caller owns.
func ReadFrame(r io.Reader, max uint32) (Frame, error) {
	return ReadFrameInto(r, nil, max)
}

// ReadFrameInto is ReadFrame reading the payload into buf when it is big
// enough, so a loop that reuses buf reads frames without allocating. The
// returned payload aliases buf (or a larger buffer that replaces it): it is
// valid until buf is reused. Pass the previous Frame.Payload back as buf to
// keep the larger buffer.
func ReadFrameInto(r io.Reader, buf []byte, max uint32) (Frame, error) {
	var hdr [frameHeaderLen]byte
	if err := readHeader(r, &hdr, buf); err != nil {
		return Frame{}, err
	}
	f := Frame{Type: FrameType(hdr[0])}
	n := binary.BigEndian.Uint32(hdr[1:])
	if lim := limit(max); n > lim {
		return f, &FrameTooLargeError{Type: f.Type, Size: uint64(n), Max: lim}
	}
	p, err := readPayload(r, buf[:0], int(n))
	if err != nil {
		return f, fmt.Errorf("protocol: %v frame truncated: %w", f.Type, err)
	}
	f.Payload = p
	return f, nil
}

// readHeader fills hdr. With an io.ByteReader it reads byte by byte; else it
// reads through buf's spare capacity when it has any (hdr itself would escape
// to the heap through the io.Reader interface).
func readHeader(r io.Reader, hdr *[frameHeaderLen]byte, buf []byte) error {
	if br, ok := r.(io.ByteReader); ok {
		for i := range hdr {
			b, err := br.ReadByte()
			if err != nil {
				if err == io.EOF && i > 0 {
					err = io.ErrUnexpectedEOF
				}
				if err == io.ErrUnexpectedEOF {
					return fmt.Errorf("protocol: frame header truncated: %w", err)
				}
				return err
			}
			hdr[i] = b
		}
		return nil
	}
	var scratch []byte
	if cap(buf) >= frameHeaderLen {
		scratch = buf[:frameHeaderLen]
	} else {
		scratch = make([]byte, frameHeaderLen)
	}
	if _, err := io.ReadFull(r, scratch); err != nil {
		if err == io.ErrUnexpectedEOF {
			return fmt.Errorf("protocol: frame header truncated: %w", err)
		}
		return err
	}
	copy(hdr[:], scratch)
	return nil
}

// readPayload reads n bytes into p's capacity, growing it as data arrives
// once n passes readChunk.
func readPayload(r io.Reader, p []byte, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if cap(p) >= n || n <= readChunk {
		if cap(p) < n {
			p = make([]byte, n)
		}
		p = p[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, eofIsUnexpected(err)
		}
		return p, nil
	}
	for len(p) < n {
		if len(p) == cap(p) {
			p = slices.Grow(p, min(n-len(p), max(len(p), readChunk)))
		}
		m, err := io.ReadFull(r, p[len(p):min(cap(p), n)])
		p = p[:len(p)+m]
		if err != nil {
			return nil, eofIsUnexpected(err)
		}
	}
	return p, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteFrame writes f to w: one Write for payloads up to 64 KiB, two (header,
// then payload) for larger ones, so the payload is never copied. A payload
// over MaxFrameSize is refused with a [*FrameTooLargeError] and nothing is
// written.
func WriteFrame(w io.Writer, f Frame) error {
	if len(f.Payload) > MaxFrameSize {
		return &FrameTooLargeError{Type: f.Type, Size: uint64(len(f.Payload)), Max: MaxFrameSize}
	}
	bp := getBuf()
	defer putBuf(bp)
	b := appendHeader((*bp)[:0], f.Type, len(f.Payload))
	var err error
	if len(f.Payload) <= pooledBufMax {
		b = append(b, f.Payload...)
		_, err = w.Write(b)
	} else if _, err = w.Write(b); err == nil {
		_, err = w.Write(f.Payload)
	}
	*bp = b[:0]
	return err
}

func appendHeader(dst []byte, t FrameType, n int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, byte(t)), uint32(n))
}

// pooledBufMax bounds the buffers kept in bufPool, so one Code frame does not
// pin 64 MiB.
const pooledBufMax = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) <= pooledBufMax {
		bufPool.Put(bp)
	}
}
