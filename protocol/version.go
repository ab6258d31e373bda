package protocol

// ALPN is the TLS application protocol both sides of a Wisp QUIC connection
// offer. It names the major version; an incompatible change gets a new one.
const ALPN = "wisp/1"

// Version is the protocol version inside ALPN "wisp/1", sent in
// Hello.ProtocolVersion and Welcome.ProtocolVersion.
//
// History:
//
//	1: 2026-11-25: first version.
//	2: 2026-12-04: poison pills: Hello.crashed (16), Welcome.crashes_recorded
//	   (6), the Quarantine message (0x0E), the Quarantined error code (116).
//	3: 2026-12-04: logs and traces: Result.log_lines (14) and
//	   OutboxEntry.log_lines (11) carry structured lines (time, stream,
//	   text) in place of Result.logs (5), which readers still accept;
//	   Invoke.trace_parent (10), Result.trace_parent (15) and
//	   OutboxEntry.trace_parent (12). Only additions: a version 2 peer
//	   ignores them and loses the logs and the trace, nothing else.
//	4: 2026-12-04: function configuration: Invoke.env (11);
//	   DesiredFunction env (5), allow_hosts (6), secrets (7, nested
//	   Secret), timers (8, nested Timer), keep_digests (9). Additions: a
//	   version 3 agent ignores them and runs functions without their
//	   configuration.
//	5: 2026-12-04: desired-set deltas: DesiredSet.digest (2), the
//	   DesiredDelta message (0x13), Heartbeat.desired_resync (5). A
//	   controller sends DesiredDelta only to agents of version 5 or more
//	   (an older agent would fail on an unknown core type); an older
//	   controller's sets carry no digest and it ignores the resync flag.
const Version = 5
