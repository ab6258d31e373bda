// Package protocol owns every byte that crosses the wire between the Wisp
// controller and its agents: the ALPN name and version, the frame format, the
// field encoding inside frames, every message with its layout, the stable
// numeric error codes, and the QUIC application codes used to close a
// connection.
//
// It imports only the standard library (internal/archtest enforces it) and it
// never does I/O of its own beyond reading and writing frames on an
// io.Reader or io.Writer that the caller hands it: it knows nothing of QUIC
// libraries, sockets, timers or logging. It must never grow business logic
// (scheduling, caching, authentication checks): it says what the bytes mean,
// the controller and the agent decide what to do with them.
//
// # Version
//
// The ALPN name ("wisp/1") is the major version: a change that an older peer
// cannot ignore safely gets a new ALPN ("wisp/2"), and a peer offers every
// ALPN it speaks. [Version] is the minor version inside one ALPN; it grows
// only by additions that older peers may ignore or that are gated on the
// version the peers agreed on (see Forward compatibility below). History:
//
//	1: 2026-11-25: first version: Hello, Welcome, Heartbeat, Invoke, NeedCode,
//	   Code, Result, Error, Ack, Drop, Ping, Pong, Started, DesiredSet,
//	   OutboxBatch, OutboxAck.
//	   2026-12-04: function failure codes 114 ModuleLimit and 115
//	   CompileBudget (no new version: a reader that does not know them
//	   treats them by their range, as function failures).
//	2: 2026-12-04: poison pills: Hello.crashed (tag 16), Welcome.crashes_recorded
//	   (tag 6), the Quarantine message (0x0E, core, sent only when the agreed
//	   version is 2 or more), the error code Quarantined (116). A controller
//	   accepts every Hello.protocol_version from 1 up and speaks the smaller
//	   of the two.
//	3: 2026-12-04: logs and traces: structured log lines ([LogLine]) in
//	   Result (tag 14, replacing the bare strings of tag 5, still read) and
//	   OutboxEntry (tag 11); W3C traceparent in Invoke (10), Result (15)
//	   and OutboxEntry (12). Additions only.
//	4: 2026-12-04: function configuration: Invoke.env (11) and
//	   DesiredFunction env, allow_hosts, secrets, timers, keep_digests
//	   (5–9). Additions only.
//	   Issue 15 (no new version: the layout is the same and a version 4
//	   agent, reporting every interval, obeys it): a Heartbeat is a load
//	   report, sent at least every Welcome.heartbeat_interval_ms (30 s from
//	   controllers since) and sooner when the agent's load changed; liveness
//	   is the QUIC connection's (keep-alives, idle timeout), not
//	   Heartbeats.
//	5: 2026-12-04: desired-set deltas: DesiredSet.digest (tag 2), the
//	   DesiredDelta message (0x13, core, sent only when the agreed version
//	   is 5 or more), Heartbeat.desired_resync (tag 5). See "Desired sets
//	   and deltas" below.
//
// # Transport and message flow
//
// There is one QUIC connection per agent–controller pair, dialled by the agent
// with ALPN "wisp/1". All streams are bidirectional. The agent opens two
// kinds of stream, and no other:
//   - the control stream, first: it sends Hello, the controller answers
//     Welcome (or Error, then closes the connection with [CloseRefused] or
//     [CloseProtocolViolation]), and the stream stays open for the life of
//     the connection;
//   - after Welcome, one outbox stream per OutboxBatch it sends.
//
// Every other stream is opened by the controller, and its first frame says
// what it is for: Invoke, Code or Ping. The controller takes every stream the
// agent opens after the control stream for an outbox stream: one whose first
// frame is not OutboxBatch is answered Error{BadRequest} and closed.
//
//	agent                                               controller
//	  |====== QUIC connect, ALPN "wisp/1" ======================>|
//	  |                                                          |
//	  |  control stream (the agent opens it, first)              |
//	  |------ Hello -------------------------------------------->|
//	  |<----- Welcome | Error -----------------------------------|  after Error: close(Refused)
//	  |------ Heartbeat (on load change, at least each interval)>|
//	  |<----- Drop (whenever the controller likes) --------------|
//	  |<----> Ping / Pong (either side asks) ------------------->|
//	  |<----- DesiredSet (on connect, and when asked: see below) |
//	  |<----- DesiredDelta (v5: after a change) -----------------|
//	  |------ Heartbeat{desired_resync} (v5: a delta missed) --->|
//	  |<----- Quarantine (v2: on connect and after every change) |
//	  |                                                          |
//	  |  outbox stream (the agent opens one per batch)           |
//	  |------ OutboxBatch (activations run while alone) -------->|
//	  |<----- OutboxAck (ids now recorded by the controller) ----|
//	  |                                                          |
//	  |  invocation stream (the controller opens one per call)   |
//	  |<----- Invoke --------------------------------------------|
//	  |------ Started (at once: the agent has it) -------------->|
//	  |------ NeedCode (only if the digest is unknown) --------->|
//	  |<----- Code (same stream, only after NeedCode) -----------|
//	  |------ Result ------------------------------------------->|
//	  |       (or, instead of all of the above, a Result whose   |
//	  |        code says nothing ran: Overloaded, Draining,      |
//	  |        Quarantined)                                      |
//	  |                                                          |
//	  |  code push stream (the controller opens it)              |
//	  |<----- Code ----------------------------------------------|
//	  |------ Ack{id: digest} | Error -------------------------->|
//	  |                                                          |
//	  |  ping stream (the controller opens it, to time a stream) |
//	  |<----- Ping ----------------------------------------------|
//	  |------ Pong (same nonce and payload) -------------------->|
//
// # Desired sets and deltas
//
// The desired set is every function the agent serves on its own. Since
// version 5 a controller names each set it sends with a 32-byte digest
// (DesiredSet.digest; how it is computed is the controller's business,
// controller/fleet/desired_catalog.go, but every controller of a cluster
// computes the same digest for the same set) and sends a change as a
// DesiredDelta: the functions to add or replace (upserts) and those to
// remove, the digest of the set it applies to (base) and of the set it
// makes (result). The rules:
//   - The agent keeps the digest of its stored set with the set, and
//     applies a delta only when that digest is the delta's base. A delta
//     whose result is the stored set's digest is already applied (another
//     controller sent the same change): it is skipped.
//   - Any other delta is not applied. The agent asks the controller that
//     sent it for the full set with a Heartbeat whose desired_resync is
//     set, at once; the controller answers with a DesiredSet from a fresh
//     read (spacing such answers by a second per agent).
//   - A controller sends a full DesiredSet at every connection (so a
//     reconnection, an agent restart or a lost delta never leave a gap),
//     when asked, and whenever a delta cannot say the change (the
//     assignment rules moved, it is behind the changes it remembers, or
//     the delta would be large). A set received whole replaces the stored
//     one, whatever its base.
//   - A delta names each function at most once, every name with a module
//     and a name, at most [MaxDeltaFunctions] names; anything else is a
//     malformed message. Removing a function the agent lacks is nothing.
//
// Notes on the flow:
//   - Each side closes its write direction (QUIC FIN) after its last frame on
//     a stream; [ReadFrame] reports io.EOF only at a frame boundary, so a
//     clean end and a truncated frame (io.ErrUnexpectedEOF) are told apart.
//   - The agent answers Invoke with Started before anything else, or with
//     a Result alone when it refuses the call without running any of it
//     ([NotStarted] codes: [Overloaded] when its queue for the function is
//     full, [Draining] while it stops). It may hold Started back a few
//     milliseconds to send it in one packet with the Result. A refusal may
//     also follow Started ([Quarantined], [Overloaded]): the code says
//     whether anything ran, not the frames before it.
//   - Delivery (since version 2; docs/delivery.md has the whole guarantee):
//     a synchronous invocation runs at most once. The controller runs it on
//     another agent only when it provably never reached the runtime: the
//     stream could not be opened, the Invoke frame could not be written,
//     the agent answered a [NotStarted] code, or the agent closed the
//     connection with [CloseShutdown] before its Started (an agent closes
//     with CloseShutdown only after it answered every invocation stream it
//     accepted). A missing Started within the controller's start timeout
//     proves nothing, since an agent killed by the function it was running
//     sends none: the controller stops scheduling on that agent and keeps
//     waiting for the Result until the deadline. The only exception is a
//     function marked idempotent, which the controller may cancel and run
//     elsewhere after a start timeout if the agent still answers a Ping;
//     never after the connection was lost.
//   - An invocation stream always ends with Result, whose code may be any
//     [ErrorCode]: OK, a function failure (100–199) or a general one such as
//     [Overloaded], [Draining] or [UnknownDigest]. Error on an invocation
//     stream means the request itself could not be understood (BadRequest).
//   - Poison pills (since version 2): an agent records every digest it is
//     compiling or running in a small file before it starts, and clears the
//     record when it ends. After a crash it quarantines the digests it finds
//     there, refuses to run them on every path ([Quarantined]), and reports
//     them in Hello.crashed until a Welcome says crashes_recorded. The
//     controller stores them, refuses their invocations, and sends every
//     agent the full Quarantine set; an operator's release sends it again
//     without them. The Quarantine set replaces what the agent received
//     before; the crashes it has not yet seen recorded stay.
//   - The receiver of Code checks that the digest is the SHA-256 of the wasm
//     bytes ("sha256:<hex>") and answers [BadRequest] if it is not.
//   - Invoke carries both an absolute deadline (wall clock, including queueing
//     and code transfer) and a relative run timeout; the agent stops the guest
//     at whichever comes first. Clocks are assumed to be NTP-synchronised;
//     the timeout is what to trust when they are not.
//   - To cancel an invocation the controller resets the stream
//     (CancelWrite/CancelRead) with the [ErrorCode] as the QUIC stream error
//     code, normally [Canceled].
//   - Frames out of place: a connection whose first stream does not start
//     with Hello is closed with [CloseProtocolViolation], and so is one whose
//     agent sent no frame for several heartbeat intervals. A new stream
//     whose first frame does not belong there (a Hello on an invocation
//     stream, anything but OutboxBatch on a stream the agent opened) is
//     answered Error{BadRequest} and closed; a known message out of place
//     on the control stream (a second Hello) is logged and skipped. The
//     connection stays up in both cases.
//   - The controller closes an agent's older connection with [CloseSuperseded]
//     when the same agent connects again, and every connection with
//     [CloseShutdown] when it shuts down after draining. An agent closes
//     with [CloseShutdown] only once it has drained: while draining it
//     answers new Invokes with Result{Draining}.
//   - Authentication: on first contact Hello carries an empty agent_id and the
//     join secret; Welcome issues an agent_id and a credential, which the agent
//     stores and presents (with its agent_id, without the join secret) on every
//     later Hello. Welcome's credential is empty unless newly issued. A bad
//     secret or credential gets Error{Unauthorized} and CloseRefused.
//
// # Frames
//
// A stream carries a sequence of frames:
//
//	type (1 byte) | payload length (uint32, big-endian) | payload (length bytes)
//
// The payload is at most [MaxFrameSize] (64 MiB) bytes; a reader may set a
// lower limit (see [ReadFrame]) and refuses a larger frame from its header,
// before allocating anything. Frame types are split into ranges:
//
//	0x00        invalid, never sent.
//	0x01-0x3F   core: a receiver must understand every core type introduced by
//	            the version the peers agreed on. A peer never sends a core type
//	            newer than that version. An unknown core type is an error that
//	            closes the connection with CloseProtocolViolation.
//	            0x10-0x1F belong to the desired set and the outbox
//	            (0x13: DesiredDelta, version 5).
//	0x40-0x7F   optional: a receiver that does not know the type skips the
//	            frame (ReadMsg returns it as *Unknown). Use them for hints and
//	            telemetry that an older peer may lose without harm.
//	0x80-0xFF   reserved for a future change of the framing itself; treated
//	            like unknown core types (an error) by version 1.
//
// The version the peers agreed on is the smaller of Hello.protocol_version and
// Welcome.protocol_version. A controller refuses only a Hello whose
// protocol_version is 0; an agent whose version is newer is spoken to at the
// controller's version.
//
// # Payload fields
//
// A payload is a sequence of fields, each
//
//	tag (uvarint) | value length (uvarint) | value (length bytes)
//
// with these value encodings (uvarint and zigzag varint are those of
// encoding/binary):
//
//	string, bytes   the raw bytes (strings are UTF-8 by convention; not checked)
//	unsigned int    one uvarint filling the whole value
//	signed int      one zigzag varint filling the whole value
//	bool            one byte, 0 or 1
//	repeated        the same tag once per element, in order
//	nested message  the nested message's payload
//
// Rules, for writers and readers:
//   - Writers emit fields in ascending tag order and omit fields that hold
//     their zero value (0, "", empty bytes, false, no elements); elements of a
//     repeated field are always written, even when empty. Readers accept any
//     order, and an absent field is its zero value.
//   - Readers skip fields with unknown tags, so a later version may add fields
//     to any message. Tags are never reused or retyped.
//   - A known tag whose value is malformed (a uvarint that does not fill the
//     value exactly or overflows its Go type, a bool that is not one byte of 0
//     or 1) makes the whole message malformed ([ErrMalformed]); so does a
//     field that runs past the end of the payload.
//   - A non-repeated tag that appears twice keeps its last value.
//   - Lengths are counted in bytes; a value of length zero is written only for
//     empty elements of repeated fields.
//
// # Forward compatibility
//
// Within ALPN "wisp/1", and only with a new entry in the Version history:
//   - Any message may gain fields with new tags; older readers skip them, so a
//     new field must be safe to lose. Tags are never reused or retyped.
//   - New optional frame types (0x40–0x7F) may be sent to any peer.
//   - New core frame types (0x01–0x3F; 0x10–0x1F are already set aside for
//     the desired set and the outbox) are sent only to a peer whose agreed
//     version introduced them.
//   - New error codes may appear; see Errors for how a reader treats an
//     unknown one.
//
// Anything else (changing the frame header, retyping or renumbering a tag, a
// type or a code, making an ignorable thing mandatory) needs a new ALPN.
//
// Every message's layout is written next to its frame type constant
// (TypeHello and so on); the Go structs in messages.go follow it field by
// field.
//
// # Errors
//
// Errors cross the wire as [ErrorCode] values, which are stable and never
// renumbered: 0 is OK, 1–99 are general, 100–199 are function failures (they
// mirror the agent runtime's kinds; see [IsFunctionError]), 200 and up are
// reserved. A receiver that meets a code it does not know treats 1–99 as
// [Internal] and 100–199 as a function failure, and keeps the number. The
// [*Error] type is both the Error message (0x08) and a Go error, so errors.Is
// matches it by code against sentinels such as [ErrUnauthorized].
// Connections are closed with a [CloseCode] as the QUIC application error
// code.
//
// # Choices made here
//
//   - Messages implement Append(dst) []byte, which cannot fail, and also the
//     standard encoding.BinaryAppender (AppendBinary(dst) ([]byte, error)) and
//     encoding.BinaryMarshaler/BinaryUnmarshaler, so they fit wherever the
//     standard interfaces are expected. An AppendBinary returning only []byte
//     would have clashed with encoding.BinaryAppender's signature.
//   - The Error message and the Go error type are one type, [Error].
//   - Welcome carries protocol_version (tag 5), the version the controller
//     will speak: without it the agent could not know which core types it may
//     send.
//   - UnmarshalBinary copies byte fields (as encoding.BinaryUnmarshaler
//     requires); [ReadMsg] and [Decode] let them alias the frame's payload,
//     which ReadMsg allocates afresh for every frame, so the wasm of a Code
//     message is never copied on receipt.
//   - [ReadFrame] grows the payload buffer as bytes actually arrive once the
//     declared length passes 1 MiB, so a peer that declares 64 MiB and sends
//     nothing costs the reader little memory.
//   - [WriteMsg] encodes the frame into one pooled buffer and writes it with a
//     single Write, so a QUIC stream sees one write per message; only a Code
//     frame with a module over 64 KiB is written in two, to avoid copying it.
//   - [Unknown]'s frame type field is named FrameType, not Type, because Type
//     is the method every [Message] has. Empty payloads decode as nil slices,
//     so a decoded message compares equal (reflect.DeepEqual) to the one sent.
//   - Result.code and Error.code are uint16 on the wire's terms: a value above
//     65535 is malformed, as is a Result.exit_code above 2^32-1.
//   - Activation ids (Invoke, Started, Result, OutboxEntry, OutboxAck) and
//     MQTT topic filters (DesiredFunction.local_topics) are plain strings
//     here. How an id is made and what its characters mean (the time it
//     carries) is internal/activationid's; which filters are valid and what
//     they match is internal/mqtttopic's. Both binaries share those
//     packages; the wire only carries the strings.
//   - Decoding does not check that strings are UTF-8 or that digests look like
//     "sha256:<hex>": that is the receiver's business, and a digest that does
//     not match its code is caught by hashing anyway.
package protocol
