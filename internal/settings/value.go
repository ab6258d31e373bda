package settings

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// value is the typed target of one setting: kind names it in --help
// ("duration", "size", ...), set parses text from any source into it, and
// String renders the current value the way set reads it back.
type value interface {
	kind() string
	set(s string) error
	String() string
}

type stringValue struct{ p *string }

func (v stringValue) kind() string       { return "string" }
func (v stringValue) set(s string) error { *v.p = s; return nil }
func (v stringValue) String() string     { return strconv.Quote(*v.p) }

type durationValue struct{ p *time.Duration }

func (v durationValue) set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want a duration such as 30s, 5m or 24h")
	}
	*v.p = d
	return nil
}

func (v durationValue) kind() string   { return "duration" }
func (v durationValue) String() string { return FormatDuration(*v.p) }

// FormatDuration is d.String() without its zero tails: 168h, 1m, 1h30m, 2.5s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

type intValue struct{ p *int }

func (v intValue) set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want an integer")
	}
	*v.p = n
	return nil
}

func (v intValue) kind() string   { return "int" }
func (v intValue) String() string { return strconv.Itoa(*v.p) }

type uintValue struct{ p *uint64 }

func (v uintValue) set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer of 0 or more")
	}
	*v.p = n
	return nil
}

func (v uintValue) kind() string   { return "uint" }
func (v uintValue) String() string { return strconv.FormatUint(*v.p, 10) }

type boolValue struct{ p *bool }

func (v boolValue) set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*v.p = b
	return nil
}

func (v boolValue) kind() string   { return "bool" }
func (v boolValue) String() string { return strconv.FormatBool(*v.p) }

type sizeValue struct{ p *int64 }

func (v sizeValue) set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

func (v sizeValue) kind() string   { return "size" }
func (v sizeValue) String() string { return FormatSize(*v.p) }

type listValue struct{ p *[]string }

func (v listValue) set(s string) error {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	*v.p = out
	return nil
}

func (v listValue) kind() string   { return "list" }
func (v listValue) String() string { return strconv.Quote(strings.Join(*v.p, ",")) }

type choiceValue struct {
	p       *string
	options []string
}

func (v choiceValue) set(s string) error {
	s = strings.TrimSpace(s)
	if v.allowed(s) < 0 {
		return fmt.Errorf("want %s", orList(v.options))
	}
	*v.p = s
	return nil
}

func (v choiceValue) kind() string         { return strings.Join(v.options, "|") }
func (v choiceValue) String() string       { return *v.p }
func (v choiceValue) allowed(s string) int { return indexOf(v.options, s) }

func indexOf(list []string, s string) int {
	for i, e := range list {
		if e == s {
			return i
		}
	}
	return -1
}

// orList is "a, b or c".
func orList(options []string) string {
	if len(options) < 2 {
		return strings.Join(options, "")
	}
	return strings.Join(options[:len(options)-1], ", ") + " or " + options[len(options)-1]
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseSize reads a positive size: 1048576, 1048576B, 1024KiB, 16MiB or
// 1GiB, up to 1 TiB.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a positive size (bytes, or with a KiB, MiB or GiB suffix)", s)
	}
	return n * mult, nil
}

// FormatSize renders n with the largest unit that divides it: 16MiB, 1536KiB, 1000.
func FormatSize(n int64) string {
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
