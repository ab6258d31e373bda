package fnspec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	good := []struct {
		name, raw string
		want      Config
	}{
		{"absent", ``, Config{}},
		{"empty object", `{}`, Config{}},
		{"everything", `{"env":{"DEVICE":"pi-7","_X1":""},"secrets":["API_KEY"],"allow_hosts":["API.example.com","10.0.0.1:8080","*.example.org","[::1]:80","*"]}`,
			Config{Env: map[string]string{"DEVICE": "pi-7", "_X1": ""}, Secrets: []string{"API_KEY"},
				AllowHosts: []string{"api.example.com", "10.0.0.1:8080", "*.example.org", "[::1]:80", "*"}}},
		{"empty lists are none", `{"env":{},"secrets":[],"allow_hosts":[]}`, Config{}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(c.raw))
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	bad := []struct{ name, raw, reason string }{
		{"unknown key", `{"envs":{}}`, "envs"},
		{"not an object", `[]`, "config"},
		{"bad env name", `{"env":{"1X":"v"}}`, `env name "1X"`},
		{"env name with a dash", `{"env":{"A-B":"v"}}`, `env name "A-B"`},
		{"NUL in a value", `{"env":{"A":"x\u0000y"}}`, "NUL"},
		{"long value", `{"env":{"A":"` + strings.Repeat("x", MaxEnvValue+1) + `"}}`, "value of"},
		{"bad secret name", `{"secrets":["a b"]}`, `secret name "a b"`},
		{"secret twice", `{"secrets":["K","K"]}`, "named twice"},
		{"secret in env", `{"env":{"K":"v"},"secrets":["K"]}`, "both in env and in secrets"},
		{"bad host", `{"allow_hosts":["exa mple.com"]}`, "allow_hosts[0]"},
		{"bad port", `{"allow_hosts":["example.com:99999"]}`, "port"},
		{"bare wildcard domain", `{"allow_hosts":["*.com"]}`, "wildcard"},
		{"scheme", `{"allow_hosts":["http://example.com"]}`, "allow_hosts[0]"},
		{"empty host", `{"allow_hosts":[""]}`, "allow_hosts[0]"},
		{"value not a string", `{"env":{"A":1}}`, "config"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.raw))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("err %v; want ErrInvalid naming %q", err, c.reason)
			}
		})
	}
}

// FuzzParseConfig: ParseConfig refuses with ErrInvalid or returns a config
// within its bounds whose stored encoding reads back the same.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"env":{"A":"1","B_2":""},"secrets":["K"],"allow_hosts":["*.example.com","a.test:443","[::1]","*"]}`,
		`{}`, `null`, `[]`, `{"env":{"1":"x"}}`, `{"allow_hosts":["*.com"]}`, `{"secrets":["A","A"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseConfig(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
			}
			return
		}
		if len(c.Env) > MaxEnvVars || len(c.Secrets) > MaxSecretRefs || len(c.AllowHosts) > MaxAllowHosts {
			t.Fatalf("over the bounds: %+v", c)
		}
		for _, h := range c.AllowHosts {
			if CheckHostPattern(h) != nil || h != strings.ToLower(h) {
				t.Fatalf("kept a bad pattern %q", h)
			}
		}
		_, _, _, raw := Spec{Config: c}.Encode()
		back, err := ParseConfig(raw)
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip: %q -> %+v -> %q -> %+v, %v", in, c, raw, back, err)
		}
	})
}
