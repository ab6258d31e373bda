package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestDecodeLogsRefusesCorrupt(t *testing.T) {
	good := encodeLogs([]LogLine{{Time: time.Now(), Stream: "other", Text: "hello"}})
	for name, b := range map[string][]byte{
		"version":      append([]byte{9}, good[1:]...),
		"cut text":     good[:len(good)-1],
		"cut stream":   good[:len(good)-8],
		"stream code":  {logsVersion, 0, 9, 0},
		"huge length":  {logsVersion, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'},
		"cut varint":   {logsVersion, 0x80},
		"no text size": {logsVersion, 0, 0},
	} {
		if _, err := decodeLogs(b); !errors.Is(err, errBadLogs) {
			t.Errorf("%s: err %v, want errBadLogs", name, err)
		}
	}
}

func FuzzDecodeLogs(f *testing.F) {
	f.Add(encodeLogs([]LogLine{{Time: time.Unix(1, 2000), Stream: "console", Text: "a"}, {Stream: "x", Text: "\x00"}}))
	f.Add([]byte{logsVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := decodeLogs(b)
		if err != nil || len(lines) == 0 {
			return
		}
		again, err := decodeLogs(encodeLogs(lines))
		if err != nil || len(again) != len(lines) {
			t.Fatalf("re-encoded %d lines decode to %d: %v", len(lines), len(again), err)
		}
		for i := range lines {
			if !lines[i].Time.Equal(again[i].Time) || lines[i].Stream != again[i].Stream || !bytes.Equal([]byte(lines[i].Text), []byte(again[i].Text)) {
				t.Fatalf("line %d: %+v, then %+v", i, lines[i], again[i])
			}
		}
	})
}
