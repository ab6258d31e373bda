package triggers

import "github.com/wispfn/wisp/protocol"

// The topic-filter rules are shared with the controller's cloud events.
var (
	validFilter = protocol.ValidTopicFilter
	matchTopic  = protocol.MatchTopic
)
