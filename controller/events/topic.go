package events

import (
	"net"
	"strconv"

	"github.com/wispfn/wisp/protocol"
)

// The topic-filter rules are shared with the agent's edge-local triggers.
var (
	validFilter = protocol.ValidTopicFilter
	matchTopic  = protocol.MatchTopic
)

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
