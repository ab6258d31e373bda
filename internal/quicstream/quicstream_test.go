package quicstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// connected starts a QUIC server on loopback that runs serve, in a goroutine
// of its own, for every stream a client opens, and returns a client
// connection to it (both closed when the test ends) and a context for the
// test's calls.
func connected(t *testing.T, conf *quic.Config, serve func(*quic.Stream)) (*quic.Conn, context.Context) {
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"t"}}, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		for {
			s, err := conn.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go serve(s)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"t"}}, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn, ctx
}

// TestFinishReturnsStreamCredit: with the peer allowed two open streams,
// fifty request/answer exchanges in a row only go through if Finish on
// both sides really closes each stream in both directions.
func TestFinishReturnsStreamCredit(t *testing.T) {
	conn, ctx := connected(t, &quic.Config{MaxIncomingStreams: 2}, func(s *quic.Stream) {
		defer Finish(s)
		var req [4]byte
		if _, err := io.ReadFull(s, req[:]); err != nil {
			return
		}
		s.Write(append(req[:], '!'))
	})
	for i := range 50 {
		s, err := conn.OpenStreamSync(ctx) // blocks for good if credits leak
		if err != nil {
			t.Fatalf("exchange %d: no stream: %v", i, err)
		}
		if _, err := s.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		var ans [5]byte
		if _, err := io.ReadFull(s, ans[:]); err != nil || string(ans[:]) != "ping!" {
			t.Fatalf("exchange %d: %q %v", i, ans, err)
		}
		Finish(s)
	}
}

// TestFinishWaitReturnsAfterThePeersFIN: FinishWait returns only once the
// peer ended its side, after reading the answer.
func TestFinishWaitReturnsAfterThePeersFIN(t *testing.T) {
	var peerClosed atomic.Bool
	finished := make(chan bool, 1)
	conn, ctx := connected(t, nil, func(s *quic.Stream) {
		var req [4]byte
		io.ReadFull(s, req[:])
		s.Write([]byte("answer"))
		FinishWait(s)
		finished <- peerClosed.Load()
	})
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("ping"))
	ans, err := io.ReadAll(s) // until the other side's FIN
	if err != nil || string(ans) != "answer" {
		t.Fatalf("%q %v", ans, err)
	}
	select {
	case <-finished:
		t.Fatal("FinishWait returned before the peer closed its side")
	default:
	}
	peerClosed.Store(true)
	s.Close()
	select {
	case ok := <-finished:
		if !ok {
			t.Fatal("FinishWait returned before the peer closed its side")
		}
	case <-time.After(FinTimeout / 2):
		t.Fatal("FinishWait did not return after the peer's FIN")
	}
}

// TestFinReadSeesOnlyAReadFIN: finRead, which lets Finish skip its
// goroutine, is true on a stream whose FIN was read and false, without
// waiting, on one whose peer has not ended its side.
func TestFinReadSeesOnlyAReadFIN(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	conn, ctx := connected(t, nil, func(s *quic.Stream) {
		var req [4]byte
		io.ReadFull(s, req[:])
		s.Write([]byte("answer"))
		if string(req[:]) == "open" {
			<-release // keep the write side open
		}
		s.Close()
	})
	exchange := func(req string) *quic.Stream {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte(req))
		var ans [6]byte
		if _, err := io.ReadFull(s, ans[:]); err != nil {
			t.Fatal(err)
		}
		return s
	}
	closed := exchange("done")
	if _, err := io.ReadAll(closed); err != nil { // up to the FIN
		t.Fatal(err)
	}
	if !finRead(closed) {
		t.Error("finRead is false on a stream whose FIN was read")
	}
	open := exchange("open")
	t0 := time.Now()
	if finRead(open) {
		t.Error("finRead is true on a stream the peer keeps open")
	}
	if d := time.Since(t0); d > FinTimeout/2 {
		t.Errorf("finRead waited %v", d)
	}
	Finish(closed)
	Finish(open)
}
