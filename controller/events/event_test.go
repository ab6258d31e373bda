package events

import (
	"slices"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
)

func TestBindings(t *testing.T) {
	evs := []fnspec.Event{
		{Type: "mqtt", Params: fnspec.EventParams{Host: "b", Port: 8883, Topic: "a/+/c"}},
		{Type: "mqtt", Params: fnspec.EventParams{Topic: "sensors/#", Local: true}},
	}
	got := Bindings("m", "f", evs)
	want := []Binding{{Module: "m", Function: "f", Host: "b", Port: 8883, Topic: "a/+/c"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Bindings = %+v, want %+v (local events are the agents')", got, want)
	}
}

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+", "a", true},
		{"+/+", "/x", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		if got := matchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestClientIDStable(t *testing.T) {
	a, b := ClientID("ctl1", "broker:1883"), ClientID("ctl1", "broker:1883")
	if a != b || a == ClientID("ctl2", "broker:1883") || a == ClientID("ctl1", "broker:1884") {
		t.Errorf("client ids not stable per instance and broker: %s", a)
	}
}

// FuzzBindings: every cloud event fnspec accepts is a binding the Manager
// accepts (the two checks must not disagree).
func FuzzBindings(f *testing.F) {
	f.Add([]byte(`[{"type":"mqtt","params":{"host":"broker","port":"1883","topic":"t"}}]`))
	f.Add([]byte(`[{"type":"mqtt","params":{"topic":"a/+/#","local":true}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := fnspec.ParseEvents(data)
		if err != nil {
			return
		}
		for _, b := range Bindings("m", "f", evs) {
			if err := checkBinding(b); err != nil {
				t.Fatalf("parsed binding %+v fails checkBinding: %v", b, err)
			}
		}
	})
}
