//go:build !unix

package failover

import "net"

// serverSpoke cannot look at the socket here: a reused connection closed
// by its server is then found only by net/http's own read.
func serverSpoke(net.Conn) bool { return false }
