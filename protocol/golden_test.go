package protocol

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// golden holds the exact frames of goldenMsgs, field by field. A change here
// is a wire change: it needs a new Version (or a new ALPN), not a new hex
// string.
var golden = []string{
	// Hello
	`01 00000057
	 02 06 656467652d31                 name "edge-1"
	 03 05 6c696e7578                   os "linux"
	 04 05 61726d3634                   arch "arm64"
	 05 08 636f6d70696c6572             engine "compiler"
	 06 06 7a6f6e653d61                 labels "zone=a"
	 06 00                              labels ""
	 07 05 8080808004                   mem_total_bytes 1<<30
	 08 05 8080808002                   mem_avail_bytes 512<<20
	 09 01 04                           cpus 4
	 0a 01 02                           inflight 2
	 0b 09 7368613235363a6162           digests "sha256:ab"
	 0c 05 302e312e30                   agent_version "0.1.0"
	 0d 02 7333                         join_secret "s3"
	 0f 01 01                           protocol_version 1`,
	// Invoke
	`04 0000003f
	 01 02 6131                         activation_id "a1"
	 02 01 6d                           module "m"
	 03 01 66                           function "f"
	 04 09 7368613235363a6162           digest "sha256:ab"
	 05 07 7b2278223a317d               args {"x":1}
	 06 06 80b8bdc2ab33                 deadline_unix_ms 1764028800000
	 07 0f 6170692e6578616d706c652e636f6d   allowed_hosts "api.example.com"
	 08 02 8827                         timeout_ms 5000
	 0a 02 7470                         trace_parent "tp"`,
	// Result
	`07 00000039
	 01 02 6131                         activation_id "a1"
	 02 01 70                           code 112 (GuestError)
	 03 04 626f6f6d                     message "boom"
	 04 07 7b2279223a327d               output {"y":2}
	 06 01 0c                           queue_us 12
	 08 02 ac02                         compile_us 300
	 09 01 2d                           instantiate_us 45
	 0a 02 e807                         run_us 1000
	 0b 01 01                           compiled true
	 0d 01 03                           exit_code 3
	 0e 07                              log_lines (nested, 7 bytes)
	 01 01 01                           unix_us 1
	 03 02 6869                         text "hi"
	 0e 00                              log_lines (nested, empty)
	 0f 02 7470                         trace_parent "tp"`,
	// Error
	`08 0000000f
	 01 01 02                           code 2 (Unauthorized)
	 02 0a 62616420736563726574         message "bad secret"`,
	// Code
	`06 00000015
	 01 09 7368613235363a6162           digest "sha256:ab"
	 02 08 0061736d01000000             wasm`,
	// Welcome
	`02 00000016
	 01 04 61672d37                     agent_id "ag-7"
	 02 02 c0de                         credential
	 03 03 63746c                       controller_id "ctl"
	 04 02 d00f                         heartbeat_interval_ms 2000
	 05 01 01                           protocol_version 1`,
	// Heartbeat
	`03 00000012
	 01 02 ac02                         mem_avail_bytes 300
	 02 01 01                           inflight 1
	 03 01 63                           invocations_total 99
	 04 06 fbb8bdc2ab33                 sent_unix_ms 1764028800123`,
	// NeedCode
	`05 0000000b
	 01 09 7368613235363a6162           digest "sha256:ab"`,
	// Ack
	`09 0000000b
	 01 09 7368613235363a6162           id "sha256:ab"`,
	// Drop
	`0a 00000016
	 01 09 7368613235363a6162           digests "sha256:ab"
	 01 09 7368613235363a6364           digests "sha256:cd"`,
	// Ping
	`0b 00000007
	 01 01 07                           nonce 7
	 02 02 0102                         payload`,
	// Pong
	`0c 00000007
	 01 01 07                           nonce 7
	 02 02 0102                         payload`,
	// Started
	`0d 00000004
	 01 02 6131                         activation_id "a1"`,
	// DesiredSet
	`10 00000016
	 01 14                              function (nested, 20 bytes)
	 01 01 6d                           module "m"
	 02 01 66                           name "f"
	 03 09 7368613235363a6162           digest "sha256:ab"
	 04 01 74                           local_topics "t"`,
	// OutboxBatch
	`11 00000024
	 01 22                              entry (nested, 34 bytes)
	 01 02 6131                         activation_id "a1"
	 02 01 6d                           module "m"
	 03 01 66                           function "f"
	 05 09 6c6f63616c2d617069           source "local-api"
	 06 01 68                           code 104 (Trap)
	 08 02 7b7d                         output {}
	 09 01 01                           started_unix_us 1
	 0a 01 02                           duration_us 2`,
	// OutboxAck
	`12 00000008
	 01 02 6131                         ids "a1"
	 01 02 6132                         ids "a2"`,
	// Quarantine
	`0e 0000001a
	 01 18                              entry (nested, 24 bytes)
	 01 09 7368613235363a6162           digest "sha256:ab"
	 02 03 6f6f6d                       reason "oom"
	 03 06 80b8bdc2ab33                 since_unix_ms 1764028800000`,
	// DesiredDelta (version 5)
	`13 0000005f
	 01 20                              base (32 bytes)
	 aa000000000000000000000000000000
	 00000000000000000000000000000001
	 02 20                              result (32 bytes)
	 bb000000000000000000000000000000
	 00000000000000000000000000000002
	 03 11                              upsert (nested, 17 bytes)
	 01 01 6d                           module "m"
	 02 01 66                           name "f"
	 03 09 7368613235363a6162           digest "sha256:ab"
	 04 06                              remove (nested, 6 bytes)
	 01 01 6d                           module "m"
	 02 01 67                           name "g"`,
}

// unhex decodes an annotated golden string: on each line, the hex words up to
// the first word that is not hex (the start of the comment).
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for line := range strings.Lines(s) {
		for _, w := range strings.Fields(line) {
			b, err := hex.DecodeString(w)
			if err != nil {
				break
			}
			out = append(out, b...)
		}
	}
	return out
}

func TestGolden(t *testing.T) {
	msgs := goldenMsgs()
	if len(msgs) != len(golden) {
		t.Fatalf("%d golden messages, %d golden encodings", len(msgs), len(golden))
	}
	for i, m := range msgs {
		want := unhex(t, golden[i])
		t.Run(m.Type().String(), func(t *testing.T) {
			got, err := AppendMsg(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
			}
			var buf bytes.Buffer
			if err := WriteMsg(&buf, m); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("WriteMsg differs from AppendMsg:\n got %x\nwant %x", buf.Bytes(), want)
			}
			back, err := ReadMsg(bytes.NewReader(want), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Fatalf("decoded golden bytes:\n got %#v\nwant %#v", back, m)
			}
		})
	}
}
