package cron

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Schedule says when a timer fires.
type Schedule interface {
	// Next returns the first tick strictly after after, in UTC; the zero
	// time when there is none within the search bound (never for a
	// schedule Parse or Every returned, before the year 9000).
	Next(after time.Time) time.Time
}

// Bounds of interval schedules and of cron expressions.
const (
	MinEvery = time.Second
	MaxEvery = 31 * 24 * time.Hour
	// MaxExprBytes bounds a cron expression's length.
	MaxExprBytes = 256
)

// ErrInvalid marks every error of Parse and Every.
var ErrInvalid = errors.New("invalid schedule")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Interval fires every D, on the multiples of D since the Unix epoch.
type Interval struct{ D time.Duration }

// Every returns the interval schedule of d.
//
// # Errors
//
// ErrInvalid when d is below MinEvery, above MaxEvery or not a whole
// number of milliseconds.
func Every(d time.Duration) (Interval, error) {
	switch {
	case d < MinEvery:
		return Interval{}, invalid("%s is shorter than the minimum of %s", d, MinEvery)
	case d > MaxEvery:
		return Interval{}, invalid("%s is longer than the maximum of %s", d, MaxEvery)
	case d%time.Millisecond != 0:
		return Interval{}, invalid("%s is not a whole number of milliseconds", d)
	}
	return Interval{D: d}, nil
}

// ParseEvery parses a Go duration ("30s", "5m", "1h30m") as Every does.
func ParseEvery(s string) (Interval, error) {
	if len(s) > 64 {
		return Interval{}, invalid("duration is too long")
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return Interval{}, invalid("%q is not a duration like \"30s\" or \"5m\"", s)
	}
	return Every(d)
}

// Next is the first multiple of D since the epoch strictly after after.
func (iv Interval) Next(after time.Time) time.Time {
	if iv.D <= 0 {
		return time.Time{}
	}
	ms := after.UnixMilli()
	if after.Before(time.UnixMilli(ms)) { // UnixMilli truncates towards zero
		ms--
	}
	d := iv.D.Milliseconds()
	n := ms - ms%d
	if ms%d < 0 {
		n -= d
	}
	return time.UnixMilli(n + d).UTC()
}

// String is the interval as a Go duration.
func (iv Interval) String() string { return iv.D.String() }

// Cron is a parsed five-field cron expression. Its fields are bit sets.
type Cron struct {
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
	expr                          string
}

// String is the expression as given.
func (c *Cron) String() string { return c.expr }

type field struct {
	name     string
	min, max int
	names    []string // names[i] is the value min+i
}

var (
	fMinute = field{name: "minute", min: 0, max: 59}
	fHour   = field{name: "hour", min: 0, max: 23}
	fDom    = field{name: "day-of-month", min: 1, max: 31}
	fMonth  = field{name: "month", min: 1, max: 12,
		names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}}
	fDow = field{name: "day-of-week", min: 0, max: 7,
		names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}}
)

// Parse parses a five-field cron expression (see the package doc).
//
// # Errors
//
// ErrInvalid, with a message naming the field and what is wrong with it.
func Parse(expr string) (*Cron, error) {
	if len(expr) > MaxExprBytes {
		return nil, invalid("the expression is longer than %d bytes", MaxExprBytes)
	}
	fs := strings.Fields(expr)
	if len(fs) != 5 {
		return nil, invalid("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(fs))
	}
	c := &Cron{expr: strings.Join(fs, " ")}
	var err error
	if c.minute, _, err = fMinute.parse(fs[0]); err != nil {
		return nil, err
	}
	if c.hour, _, err = fHour.parse(fs[1]); err != nil {
		return nil, err
	}
	if c.dom, c.domStar, err = fDom.parse(fs[2]); err != nil {
		return nil, err
	}
	if c.month, _, err = fMonth.parse(fs[3]); err != nil {
		return nil, err
	}
	if c.dow, c.dowStar, err = fDow.parse(fs[4]); err != nil {
		return nil, err
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	if (c.domStar || c.dowStar) && !c.possibleDay() { // both must match: the day must exist
		return nil, invalid("day-of-month %q never occurs in month %q", fs[2], fs[3])
	}
	if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, invalid("%q never fires", c.expr)
	}
	return c, nil
}

// possibleDay reports whether some day of the month set exists in some
// month of the month set (February has 29 days in leap years).
func (c *Cron) possibleDay() bool {
	days := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if c.month&(1<<m) == 0 {
			continue
		}
		if c.dom&(uint64(1)<<(days[m]+1)-1) != 0 {
			return true
		}
	}
	return false
}

// parse reads one field: its bit set, and whether it starts with "*"
// (which decides how the day fields combine, as in Vixie cron).
func (f field) parse(s string) (set uint64, star bool, err error) {
	star = strings.HasPrefix(s, "*")
	for part := range strings.SplitSeq(s, ",") {
		bitsOf, err := f.parsePart(part)
		if err != nil {
			return 0, false, err
		}
		set |= bitsOf
	}
	return set, star, nil
}

func (f field) parsePart(part string) (uint64, error) {
	rng, stepS, hasStep := strings.Cut(part, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepS)
		if err != nil || len(stepS) > 2 || n < 1 || n > f.max-f.min+1 {
			return 0, invalid("%s field %q: step %q must be a number from 1 to %d", f.name, part, stepS, f.max-f.min+1)
		}
		step = n
	}
	lo, hi := f.min, f.max
	switch {
	case rng == "*":
		if f.name == "day-of-week" {
			hi = 6 // 7 would repeat Sunday
		}
	case rng == "":
		return 0, invalid("%s field: empty value in %q", f.name, part)
	default:
		a, b, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = f.value(a, part); err != nil {
			return 0, err
		}
		hi = lo
		if isRange {
			if hi, err = f.value(b, part); err != nil {
				return 0, err
			}
			if hi < lo {
				return 0, invalid("%s field %q: range %d-%d goes backwards", f.name, part, lo, hi)
			}
		} else if hasStep {
			hi = f.max // "5/15" means 5-max/15, as in Vixie cron
		}
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << v
	}
	return set, nil
}

func (f field) value(s, part string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || len(s) > 2 || s[0] == '+' || s[0] == '-' {
		if f.names != nil {
			return 0, invalid("%s field %q: %q is not a number from %d to %d or a name like %s", f.name, part, s, f.min, f.max, f.names[0])
		}
		return 0, invalid("%s field %q: %q is not a number from %d to %d", f.name, part, s, f.min, f.max)
	}
	if n < f.min || n > f.max {
		return 0, invalid("%s field %q: %d is outside %d-%d", f.name, part, n, f.min, f.max)
	}
	return n, nil
}

// dayMatches applies Vixie cron's rule: when either day field starts with
// "*" both must match; when both are restricted, either may.
func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<t.Day()) != 0
	dow := c.dow&(1<<int(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// searchYears bounds Next's search. Parse refuses an expression that
// does not fire within it from 2000; the rarest that pass (February 29
// on given weekdays) recur within 40 years.
const searchYears = 50

// Next is the first matching minute strictly after after, in UTC.
func (c *Cron) Next(after time.Time) time.Time {
	t := after.UTC().Truncate(time.Minute).Add(time.Minute)
	end := t.AddDate(searchYears, 0, 0)
	for t.Before(end) {
		if c.month&(1<<int(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if c.hour&(1<<t.Hour()) == 0 {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
			continue
		}
		if c.minute&(1<<t.Minute()) == 0 {
			// Jump straight to the next minute set in this hour.
			rest := c.minute >> (t.Minute() + 1) << (t.Minute() + 1)
			if rest == 0 {
				t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
			} else {
				t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), bits.TrailingZeros64(rest), 0, 0, time.UTC)
			}
			continue
		}
		return t
	}
	return time.Time{}
}
