package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// udpRelay forwards UDP datagrams between clients and one target, and can
// drop everything silently: a network partition without any error for
// either side to see (the partition test needs no root this way).
type udpRelay struct {
	ln     *net.UDPConn
	target *net.UDPAddr
	cut    atomic.Bool
	mu     sync.Mutex
	peers  map[string]*net.UDPConn
}

func startRelay(t *testing.T, target string) *udpRelay {
	t.Helper()
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{ln: ln, target: taddr, peers: map[string]*net.UDPConn{}}
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

func (r *udpRelay) addr() string { return r.ln.LocalAddr().String() }

func (r *udpRelay) run() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if r.cut.Load() {
			continue
		}
		up := r.peer(from)
		if up != nil {
			up.Write(buf[:n])
		}
	}
}

// peer returns the upstream socket of a client, starting its return path.
func (r *udpRelay) peer(from *net.UDPAddr) *net.UDPConn {
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
			if !r.cut.Load() {
				r.ln.WriteToUDP(buf[:n], from)
			}
		}
	}()
	return up
}
