//go:build unix

package failover

import (
	"net"
	"syscall"
)

// serverSpoke reports whether c's socket holds unread bytes or an end of
// stream, without reading them: recv with MSG_PEEK|MSG_DONTWAIT under
// RawConn.Control, which does not wait for net/http's pending read (Read
// would: it holds the descriptor's read lock while it waits).
func serverSpoke(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	spoke := false
	var buf [1]byte
	raw.Control(func(fd uintptr) {
		for {
			_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			// n > 0: bytes wait; n == 0 with no error: the server's FIN;
			// an error other than EAGAIN: the connection is broken (a
			// reset). EAGAIN: nothing yet.
			spoke = err == nil || err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
			return
		}
	})
	return spoke
}
