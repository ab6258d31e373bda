// Package testnet holds the network fault injectors the tests share: a TCP
// proxy that can refuse connections for a while (a server going away) and a
// UDP relay that can drop everything silently (a network partition nobody
// is told about). Both run on loopback. It is test support only;
// production code must not import it.
package testnet

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TCPProxy forwards TCP connections from a loopback port of its own to a
// target. Stop closes the port (connection refused) and cuts open
// connections; Start opens the same port again.
type TCPProxy struct {
	target string
	mu     sync.Mutex
	addr   string
	ln     net.Listener
	conns  []net.Conn
}

// NewTCPProxy starts a proxy to target; it stops when the test ends.
func NewTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	p := &TCPProxy{target: target, addr: "127.0.0.1:0"}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Addr is the proxy's host:port.
func (p *TCPProxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Start (re)opens the proxy's port, retrying for a few seconds while the
// kernel still holds it.
func (p *TCPProxy) Start() error {
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("testnet: listen %s: %w", addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // stopped while this one was being set up
				p.mu.Unlock()
				c.Close()
				up.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return nil
}

// Stop closes the port and every connection through it.
func (p *TCPProxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// UDPRelay forwards datagrams between clients and one target; with Cut set
// it drops everything, both ways, without any error for either side.
type UDPRelay struct {
	// Cut drops every datagram while true.
	Cut    atomic.Bool
	ln     *net.UDPConn
	target *net.UDPAddr
	mu     sync.Mutex
	peers  map[string]*net.UDPConn
}

// NewUDPRelay starts a relay to target; it stops when the test ends.
func NewUDPRelay(t testing.TB, target string) *UDPRelay {
	t.Helper()
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &UDPRelay{ln: ln, target: taddr, peers: map[string]*net.UDPConn{}}
	go r.run()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, p := range r.peers {
			p.Close()
		}
		r.mu.Unlock()
	})
	return r
}

// Addr is the relay's host:port, where clients send.
func (r *UDPRelay) Addr() string { return r.ln.LocalAddr().String() }

func (r *UDPRelay) run() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if r.Cut.Load() {
			continue
		}
		if up := r.peer(from); up != nil {
			up.Write(buf[:n])
		}
	}
}

// peer returns the upstream socket of a client, starting its return path.
func (r *UDPRelay) peer(from *net.UDPAddr) *net.UDPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[from.String()]; ok {
		return p
	}
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil
	}
	r.peers[from.String()] = up
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if !r.Cut.Load() {
				r.ln.WriteToUDP(buf[:n], from)
			}
		}
	}()
	return up
}
