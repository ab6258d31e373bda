package events

import (
	"errors"
	"testing"
)

func TestParseEvents(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
		err  bool
	}{
		{"empty", ``, nil, false},
		{"null", `null`, nil, false},
		{"port as string", `[{"type":"mqtt","params":{"host":"broker","port":"1883","topic":"t"}}]`,
			[]Event{{Type: "mqtt", Host: "broker", Port: 1883, Topic: "t"}}, false},
		{"port as number", `[{"type":"mqtt","params":{"host":"b","port":8883,"topic":"a/+/c"}}]`,
			[]Event{{Type: "mqtt", Host: "b", Port: 8883, Topic: "a/+/c"}}, false},
		{"local needs no host", `[{"type":"mqtt","params":{"topic":"sensors/#","local":true}}]`,
			[]Event{{Type: "mqtt", Topic: "sensors/#", Local: true}}, false},
		{"other type", `[{"type":"kafka","params":{"host":"b","port":1,"topic":"t"}}]`, nil, true},
		{"no host", `[{"type":"mqtt","params":{"port":1883,"topic":"t"}}]`, nil, true},
		{"no port", `[{"type":"mqtt","params":{"host":"b","topic":"t"}}]`, nil, true},
		{"port zero", `[{"type":"mqtt","params":{"host":"b","port":"0","topic":"t"}}]`, nil, true},
		{"port too big", `[{"type":"mqtt","params":{"host":"b","port":65536,"topic":"t"}}]`, nil, true},
		{"fractional port", `[{"type":"mqtt","params":{"host":"b","port":1883.5,"topic":"t"}}]`, nil, true},
		{"port word", `[{"type":"mqtt","params":{"host":"b","port":"mqtt","topic":"t"}}]`, nil, true},
		{"no topic", `[{"type":"mqtt","params":{"host":"b","port":1883}}]`, nil, true},
		{"bad filter", `[{"type":"mqtt","params":{"host":"b","port":1883,"topic":"a/#/b"}}]`, nil, true},
		{"not an array", `{"type":"mqtt"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvents([]byte(tt.in))
			if tt.err {
				if !errors.Is(err, ErrInvalidEvent) {
					t.Fatalf("err = %v, want ErrInvalidEvent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("[%d] = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
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

func FuzzParseEvents(f *testing.F) {
	f.Add([]byte(`[{"type":"mqtt","params":{"host":"broker","port":"1883","topic":"t"}}]`))
	f.Add([]byte(`[{"type":"mqtt","params":{"topic":"a/+/#","local":true,"port":1e3}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ParseEvents(data)
		if err != nil {
			return
		}
		for _, e := range evs {
			if !validFilter(e.Topic) || e.Port < 0 || e.Port > 65535 || (!e.Local && (e.Host == "" || e.Port == 0)) {
				t.Fatalf("accepted an unusable event %+v from %q", e, data)
			}
			if !e.Local {
				if err := checkBinding(e.Binding("m", "f")); err != nil {
					t.Fatalf("parsed event %+v fails checkBinding: %v", e, err)
				}
			}
		}
	})
}
