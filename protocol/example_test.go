package protocol_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/wispfn/wisp/protocol"
)

// The invocation flow of the package documentation, over an in-memory stream
// standing in for a QUIC stream.
func Example() {
	var toAgent, toController bytes.Buffer

	// Controller: open a stream, send Invoke.
	protocol.WriteMsg(&toAgent, &protocol.Invoke{ActivationID: "a1", Function: "hello", Digest: "sha256:ab", Args: []byte(`{}`)})

	// Agent: read it; it lacks the code, so it asks for it.
	m, _ := protocol.ReadMsg(&toAgent, protocol.MaxFrameSize)
	inv := m.(*protocol.Invoke)
	protocol.WriteMsg(&toController, &protocol.NeedCode{Digest: inv.Digest})

	// Controller: send the code on the same stream.
	m, _ = protocol.ReadMsg(&toController, 1<<20)
	protocol.WriteMsg(&toAgent, &protocol.Code{Digest: m.(*protocol.NeedCode).Digest, Wasm: []byte("\x00asm\x01\x00\x00\x00")})

	// Agent: run it; the guest traps.
	m, _ = protocol.ReadMsg(&toAgent, protocol.MaxFrameSize)
	fmt.Printf("agent got %v for %s (%d bytes)\n", m.Type(), m.(*protocol.Code).Digest, len(m.(*protocol.Code).Wasm))
	protocol.WriteMsg(&toController, &protocol.Result{ActivationID: inv.ActivationID, Code: protocol.Trap, Message: "unreachable", Compiled: true})

	// Controller: the result.
	m, _ = protocol.ReadMsg(&toController, 1<<20)
	res := m.(*protocol.Result)
	err := res.Err()
	fmt.Println(res.ActivationID, err, protocol.IsFunctionError(res.Code))
	fmt.Println(errors.Is(err, &protocol.Error{Code: protocol.Trap}))
	// Output:
	// agent got Code for sha256:ab (8 bytes)
	// a1 wisp: trap: unreachable true
	// true
}

func ExampleReadMsg() {
	var stream bytes.Buffer
	protocol.WriteFrame(&stream, protocol.Frame{Type: 0x42, Payload: []byte("a hint from a newer peer")})
	protocol.WriteMsg(&stream, &protocol.Heartbeat{Inflight: 3})

	for {
		m, err := protocol.ReadMsg(&stream, 1<<20)
		if err != nil {
			fmt.Println(err) // io.EOF at the end of the stream
			return
		}
		switch m := m.(type) {
		case *protocol.Unknown:
			fmt.Printf("skipping optional frame %v\n", m.Type())
		case *protocol.Heartbeat:
			fmt.Println("heartbeat, inflight", m.Inflight)
		}
	}
	// Output:
	// skipping optional frame FrameType(0x42)
	// heartbeat, inflight 3
	// EOF
}
