package failover

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
)

// errServerClosing: a reused connection had bytes or an end of stream
// waiting from the server when a request was about to be written on it.
// An HTTP/1.1 server sends nothing between an answer and the next request
// except when it closes the connection (a FIN, a TLS close_notify), so
// the request is not written: it provably never reached the server.
var errServerClosing = errors.New("the server closed the connection before the request was sent")

// conn counts the bytes written on a connection, so that an attempt knows
// whether any byte of its request left this process, and checks a reused
// connection for a close from the server just before a request is
// written on it.
type conn struct {
	net.Conn
	written atomic.Int64
	// checkNext: the next Write starts a request on a reused connection.
	checkNext atomic.Bool
}

func (c *conn) Write(b []byte) (int, error) {
	if c.checkNext.Swap(false) && serverSpoke(c.Conn) {
		return 0, errServerClosing
	}
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// NetConn is the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// counting wraps dial so that every connection it makes is a *conn.
func counting(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &conn{Conn: c}, nil
	}
}

// connOf finds the *conn under c (a *tls.Conn over it, for https).
func connOf(c net.Conn) *conn {
	for c != nil {
		switch x := c.(type) {
		case *conn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}
