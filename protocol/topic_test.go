package protocol

import "testing"

func TestTopics(t *testing.T) {
	for _, tt := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"#", "a/b", true}, {"+/b", "a/b", true},
		{"#", "$SYS/x", false}, {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true}, {"a", "a/b", false},
	} {
		if got := MatchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
	for f, want := range map[string]bool{"a/b": true, "a/#": true, "#": true, "+/+": true, "": false, "a#": false, "a/#/b": false, "a+/b": false, "a\x00": false} {
		if ValidTopicFilter(f) != want {
			t.Errorf("ValidTopicFilter(%q) != %v", f, want)
		}
	}
}
