package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/wispfn/wisp/protocol"
)

// simAgent is a minimal agent for scale tests: it joins with a token, sends
// heartbeats, and answers every Invoke with a canned result without running
// anything. Hundreds of them fit in one process.
type simAgent struct {
	conn    *quic.Conn
	invoked atomic.Int64
}

func dialSimAgent(ctx context.Context, addr, token, name string) (*simAgent, error) {
	return dialSimAgentMem(ctx, addr, token, name, 1<<30, 512<<20)
}

// dialSimAgentMem is dialSimAgent reporting total and available memory of
// its choosing (a liar reports what it likes), in its hello and heartbeats.
func dialSimAgentMem(ctx context.Context, addr, token, name string, total, avail uint64) (*simAgent, error) {
	tok, err := protocol.ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if protocol.KeyFingerprint(cs.PeerCertificates[0]) != tok.Fingerprint {
				return fmt.Errorf("fingerprint mismatch")
			}
			return nil
		},
	}
	conn, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{KeepAlivePeriod: 2 * time.Second, MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	hello := &protocol.Hello{Name: name, OS: "linux", Arch: "sim", Engine: "compiler",
		MemTotalBytes: total, MemAvailBytes: avail, CPUs: 1, JoinSecret: tok.Secret, ProtocolVersion: protocol.Version}
	if err := protocol.WriteMsg(ctrl, hello); err != nil {
		return nil, err
	}
	msg, err := protocol.ReadMsg(ctrl, 1<<20)
	if err != nil {
		return nil, err
	}
	if _, ok := msg.(*protocol.Welcome); !ok {
		return nil, fmt.Errorf("hello answered with %v", msg.Type())
	}
	a := &simAgent{conn: conn}
	go func() {
		for {
			select {
			case <-conn.Context().Done():
				return
			case <-time.After(2 * time.Second):
			}
			if protocol.WriteMsg(ctrl, &protocol.Heartbeat{MemAvailBytes: avail}) != nil {
				return
			}
		}
	}()
	go func() { // the controller's control frames (Drop) are ignored
		for {
			if _, err := protocol.ReadMsg(ctrl, 1<<20); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			s, err := conn.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				defer s.CancelRead(0) // end both directions, or stream credit leaks
				defer s.Close()
				msg, err := protocol.ReadMsg(s, protocol.MaxFrameSize)
				if err != nil {
					return
				}
				switch m := msg.(type) {
				case *protocol.Invoke:
					a.invoked.Add(1)
					protocol.WriteMsg(s, &protocol.Started{ActivationID: m.ActivationID})
					protocol.WriteMsg(s, &protocol.Result{ActivationID: m.ActivationID, Output: []byte(`{"sim":true}`)})
				case *protocol.Code:
					protocol.WriteMsg(s, &protocol.Ack{ID: m.Digest})
				case *protocol.Ping:
					protocol.WriteMsg(s, &protocol.Pong{Nonce: m.Nonce, Payload: m.Payload})
				}
			}()
		}
	}()
	return a, nil
}

func (a *simAgent) close() {
	a.conn.CloseWithError(quic.ApplicationErrorCode(protocol.CloseShutdown), "")
}
