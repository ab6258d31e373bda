package events

import (
	"net"
	"strconv"

	"github.com/wispfn/wisp/internal/mqtttopic"
)

// The topic-filter rules are shared with the agent's edge-local triggers.
var (
	validFilter = mqtttopic.ValidFilter
	matchTopic  = mqtttopic.Match
)

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
