package cron

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCronNext(t *testing.T) {
	tests := []struct {
		name, expr, after string
		want              []string // the next ticks, in order
	}{
		{"every minute", "* * * * *", "2026-12-04 17:31", []string{"2026-12-04 17:32", "2026-12-04 17:33"}},
		{"every minute step 1", "*/1 * * * *", "2026-12-04 17:59", []string{"2026-12-04 18:00"}},
		{"every 15 minutes", "*/15 * * * *", "2026-12-04 17:31", []string{"2026-12-04 17:45", "2026-12-04 18:00", "2026-12-04 18:15"}},
		{"list and range", "5,10-12 * * * *", "2026-12-04 17:11", []string{"2026-12-04 17:12", "2026-12-04 18:05", "2026-12-04 18:10"}},
		{"range with step", "0-30/10 9 * * *", "2026-12-04 09:20", []string{"2026-12-04 09:30", "2026-12-05 09:00"}},
		{"start with step", "50/5 * * * *", "2026-12-04 09:20", []string{"2026-12-04 09:50", "2026-12-04 09:55", "2026-12-04 10:50"}},
		{"daily at midnight", "0 0 * * *", "2026-12-31 23:59", []string{"2027-01-01 00:00", "2027-01-02 00:00"}},
		{"monthly on the 31st", "0 12 31 * *", "2026-01-31 12:00", []string{"2026-03-31 12:00", "2026-05-31 12:00"}},
		{"leap day", "0 0 29 2 *", "2026-01-01 00:00", []string{"2028-02-29 00:00", "2032-02-29 00:00"}},
		{"leap day across 2100", "0 0 29 2 *", "2096-03-01 00:00", []string{"2104-02-29 00:00"}},
		{"mondays by name", "30 8 * * MON", "2026-12-04 00:00", []string{"2026-12-07 08:30", "2026-12-14 08:30"}},
		{"sunday as 7", "0 0 * * 7", "2026-12-04 00:00", []string{"2026-12-06 00:00", "2026-12-13 00:00"}},
		{"sunday as 0", "0 0 * * 0", "2026-12-04 00:00", []string{"2026-12-06 00:00"}},
		{"weekdays range by name", "0 9 * * mon-fri", "2026-12-04 10:00", []string{"2026-12-07 09:00", "2026-12-08 09:00"}},
		{"months by name", "0 0 1 jan,JUL *", "2026-12-04 00:00", []string{"2027-01-01 00:00", "2027-07-01 00:00"}},
		{"both days restricted: either", "0 0 13 * FRI", "2026-12-01 00:00", []string{"2026-12-04 00:00", "2026-12-11 00:00", "2026-12-13 00:00"}},
		{"impossible day or a weekday: the weekday", "0 0 30 2 MON", "2026-02-01 00:00", []string{"2026-02-02 00:00", "2026-02-09 00:00"}},
		{"day star step: both must match", "0 0 */2 * MON", "2026-12-01 00:00", []string{"2026-12-07 00:00", "2026-12-21 00:00"}},
		{"after a tick is strictly after", "0 * * * *", "2026-12-04 17:00", []string{"2026-12-04 18:00"}},
		{"extra spaces", "  0   12  *  *  * ", "2026-12-04 13:00", []string{"2026-12-05 12:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.expr)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.expr, err)
			}
			at := utc(tt.after)
			for i, w := range tt.want {
				at = c.Next(at)
				if !at.Equal(utc(w)) {
					t.Fatalf("tick %d: got %s, want %s", i, at.Format(time.DateTime), w)
				}
			}
		})
	}
}

func TestCronNextMidMinute(t *testing.T) {
	c, _ := Parse("* * * * *")
	got := c.Next(time.Date(2026, 12, 4, 17, 31, 59, 999, time.UTC))
	if !got.Equal(utc("2026-12-04 17:32")) {
		t.Fatalf("got %s", got)
	}
	// Other zones are read as the same instant; ticks are UTC.
	paris := time.FixedZone("CET", 3600)
	got = c.Next(time.Date(2026, 12, 4, 18, 31, 30, 0, paris))
	if !got.Equal(utc("2026-12-04 17:32")) || got.Location() != time.UTC {
		t.Fatalf("got %s", got)
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"", "want 5 fields"},
		{"* * * *", "want 5 fields"},
		{"* * * * * *", "want 5 fields"},
		{"60 * * * *", "minute field"},
		{"* 24 * * *", "hour field"},
		{"* * 0 * *", "day-of-month field"},
		{"* * 32 * *", "day-of-month field"},
		{"* * * 13 *", "month field"},
		{"* * * * 8", "day-of-week field"},
		{"*/0 * * * *", "step"},
		{"*/61 * * * *", "step"},
		{"*/x * * * *", "step"},
		{"5-1 * * * *", "goes backwards"},
		{"1,,2 * * * *", "empty value"},
		{"a * * * *", "minute field"},
		{"-1 * * * *", "minute field"},
		{"+1 * * * *", "minute field"},
		{"001 * * * *", "minute field"},
		{"* * * FOO *", "month field"},
		{"* * * * MONDAY", "day-of-week field"},
		{"* * * * JAN", "day-of-week field"},
		{"0 0 30 2 *", "never occurs"},
		{"0 0 31 4,6,9,11 *", "never occurs"},
		{"@hourly", "want 5 fields"},
		{strings.Repeat("1,", 200) + "1 * * * *", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := Parse(tt.expr)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestEvery(t *testing.T) {
	for _, tt := range []struct {
		in   string
		ok   bool
		want time.Duration
	}{
		{"1s", true, time.Second}, {"30s", true, 30 * time.Second}, {"1h30m", true, 90 * time.Minute},
		{"1500ms", true, 1500 * time.Millisecond}, {"744h", true, MaxEvery},
		{"999ms", false, 0}, {"0s", false, 0}, {"-5s", false, 0}, {"745h", false, 0},
		{"1.0000001s", false, 0}, {"soon", false, 0}, {"", false, 0}, {"30", false, 0},
	} {
		iv, err := ParseEvery(tt.in)
		if (err == nil) != tt.ok || (tt.ok && iv.D != tt.want) {
			t.Errorf("ParseEvery(%q) = %v, %v", tt.in, iv, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseEvery(%q): %v is not ErrInvalid", tt.in, err)
		}
	}
}

func TestIntervalNextAligned(t *testing.T) {
	iv, _ := Every(30 * time.Second)
	at := time.Date(2026, 12, 4, 17, 31, 10, 500, time.UTC)
	for _, want := range []string{"17:31:30", "17:32:00", "17:32:30"} {
		at = iv.Next(at)
		if got := at.Format(time.TimeOnly); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	// Strictly after a tick, and before the epoch too.
	if got := iv.Next(time.Unix(0, 0)); !got.Equal(time.Unix(30, 0)) {
		t.Fatalf("after the epoch: %s", got)
	}
	if got := iv.Next(time.Unix(-31, 0)); !got.Equal(time.Unix(-30, 0)) {
		t.Fatalf("before the epoch: %s", got)
	}
	if got := iv.Next(time.Unix(-30, -1)); !got.Equal(time.Unix(-30, 0)) {
		t.Fatalf("a nanosecond before a tick: %s", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/15 0-6/2 1,15 JAN-mar SUN", "0 0 29 2 *", "5/5 * * * 7", "0 0 */29 2 */3", "a b c d e"} {
		f.Add(s, int64(1796000000))
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		c, err := Parse(expr)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		after := time.Unix(unix%(1<<33), 0) // years 1697..2242
		next := c.Next(after)
		if next.IsZero() {
			return // beyond the search bound (a rare day, far from 2000)
		}
		if !next.After(after) || next.Second() != 0 || next.Nanosecond() != 0 {
			t.Fatalf("%q: Next(%s) = %s", expr, after, next)
		}
		// Nothing matches in between: the tick before next is after.
		if c.Next(next.Add(-time.Minute)) != next {
			t.Fatalf("%q: Next is not stable at %s", expr, next)
		}
		again, err := Parse(c.String())
		if err != nil || again.Next(after) != next {
			t.Fatalf("%q: String %q does not parse back the same: %v", expr, c.String(), err)
		}
	})
}
