package protocol

// goldenMsgs are fixed messages whose encodings golden_test.go pins down.
func goldenMsgs() []Message {
	return []Message{
		&Hello{
			Name: "edge-1", OS: "linux", Arch: "arm64", Engine: "compiler",
			Labels:        []string{"zone=a", ""},
			MemTotalBytes: 1 << 30, MemAvailBytes: 512 << 20, CPUs: 4, Inflight: 2,
			Digests:      []string{"sha256:ab"},
			AgentVersion: "0.1.0", JoinSecret: []byte("s3"), ProtocolVersion: 1,
		},
		&Invoke{
			ActivationID: "a1", Module: "m", Function: "f", Digest: "sha256:ab",
			Args: []byte(`{"x":1}`), DeadlineUnixMS: 1764028800000,
			AllowedHosts: []string{"api.example.com"}, TimeoutMS: 5000, TraceParent: "tp",
		},
		&Result{
			ActivationID: "a1", Code: GuestError, Message: "boom", Output: []byte(`{"y":2}`),
			Logs: []LogLine{{UnixUS: 1, Text: "hi"}, {}}, QueueUS: 12, CompileUS: 300, InstantiateUS: 45, RunUS: 1000,
			Compiled: true, ExitCode: 3, TraceParent: "tp",
		},
		&Error{Code: Unauthorized, Message: "bad secret"},
		&Code{Digest: "sha256:ab", Wasm: []byte("\x00asm\x01\x00\x00\x00")},
		&Welcome{AgentID: "ag-7", Credential: []byte{0xc0, 0xde}, ControllerID: "ctl", HeartbeatIntervalMS: 2000, ProtocolVersion: 1},
		&Heartbeat{MemAvailBytes: 300, Inflight: 1, InvocationsTotal: 99, SentUnixMS: 1764028800123},
		&NeedCode{Digest: "sha256:ab"},
		&Ack{ID: "sha256:ab"},
		&Drop{Digests: []string{"sha256:ab", "sha256:cd"}},
		&Ping{Nonce: 7, Payload: []byte{1, 2}},
		&Pong{Nonce: 7, Payload: []byte{1, 2}},
		&Started{ActivationID: "a1"},
		&DesiredSet{Functions: []DesiredFunction{{Module: "m", Name: "f", Digest: "sha256:ab", LocalTopics: []string{"t"}}}},
		&OutboxBatch{Entries: []OutboxEntry{{ActivationID: "a1", Module: "m", Function: "f", Source: "local-api", Code: Trap, Output: []byte("{}"), StartedUnixUS: 1, DurationUS: 2}}},
		&OutboxAck{IDs: []string{"a1", "a2"}},
		&Quarantine{Entries: []QuarantineEntry{{Digest: "sha256:ab", Reason: "oom", SinceUnixMS: 1764028800000}}},
		&DesiredDelta{Base: SetDigest{0: 0xaa, 31: 0x01}, Result: SetDigest{0: 0xbb, 31: 0x02},
			Upserts: []DesiredFunction{{Module: "m", Name: "f", Digest: "sha256:ab"}},
			Removes: []FunctionName{{Module: "m", Name: "g"}}},
	}
}
