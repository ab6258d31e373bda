package events

import (
	"fmt"

	"github.com/wispfn/wisp/controller/fnspec"
)

// Binding is one cloud-side subscription: messages on Topic at Host:Port
// invoke Module/Function.
type Binding struct {
	Module, Function string
	Host             string
	Port             int
	Topic            string // an MQTT topic filter; + and # wildcards are allowed
}

// Broker returns "host:port", the key under which bindings share a connection.
func (b Binding) Broker() string {
	return joinHostPort(b.Host, b.Port)
}

func (b Binding) String() string {
	return fmt.Sprintf("%s/%s <- mqtt://%s/%s", b.Module, b.Function, b.Broker(), b.Topic)
}

// Bindings returns the cloud subscriptions of a function's events: every
// MQTT event but the edge-local ones, which are the agents'. Timers are
// controller/timers'.
func Bindings(module, function string, evs []fnspec.Event) []Binding {
	var out []Binding
	for _, e := range evs {
		if e.Type == fnspec.EventMQTT && !e.Params.Local {
			out = append(out, Binding{Module: module, Function: function, Host: e.Params.Host, Port: e.Params.Port, Topic: e.Params.Topic})
		}
	}
	return out
}
