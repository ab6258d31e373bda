package testnet

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestTCPProxyStopStart(t *testing.T) {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p := NewTCPProxy(t, srv.Addr().String())
	echo := func() error {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("x"))
		b := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = io.ReadFull(c, b)
		return err
	}
	if err := echo(); err != nil {
		t.Fatal(err)
	}
	addr := p.Addr()
	p.Stop()
	if err := echo(); err == nil {
		t.Fatal("stopped proxy still forwards")
	}
	if err := p.Start(); err != nil || p.Addr() != addr {
		t.Fatalf("restart: %v on %s (was %s)", err, p.Addr(), addr)
	}
	if err := echo(); err != nil {
		t.Fatal(err)
	}
}

func TestUDPRelayCut(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		b := make([]byte, 100)
		for {
			n, from, err := srv.ReadFromUDP(b)
			if err != nil {
				return
			}
			srv.WriteToUDP(b[:n], from)
		}
	}()
	r := NewUDPRelay(t, srv.LocalAddr().String())
	c, err := net.Dial("udp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping := func() error {
		c.Write([]byte("p"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 10))
		return err
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	r.Cut.Store(true)
	if err := ping(); err == nil {
		t.Fatal("a cut relay forwarded")
	}
	r.Cut.Store(false)
	if err := ping(); err != nil {
		t.Fatal(err)
	}
}
