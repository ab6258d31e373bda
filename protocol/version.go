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
const Version = 1
