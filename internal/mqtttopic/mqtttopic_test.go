package mqtttopic

import "testing"

func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/b", "a/b/c", false},
		{"a/+", "a/b", true}, {"a/+", "a/b/c", false}, {"a/+/c", "a/b/c", true},
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"#", "a/b", true},
		{"+", "a", true}, {"+/+", "/x", true}, {"+/b", "a/b", true},
		{"#", "$SYS/x", false}, {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true},
		{"a", "a/b", false}, {"a/b/c", "a/b", false},
	} {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{
		"a/b": true, "a/#": true, "#": true, "+/+": true,
		"": false, "a#": false, "a+": false, "a/#/b": false, "a+/b": false, "a\x00": false,
	} {
		if ValidFilter(f) != want {
			t.Errorf("ValidFilter(%q) != %v", f, want)
		}
	}
}
