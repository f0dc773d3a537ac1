package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a Go duration written as a string in policy configs ("90s", "10m"). Bare numbers
// are refused as ambiguous, and so are negative durations.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration such as "600s" or "10m"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`invalid duration %q: want e.g. "600s" or "10m"`, s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Size is a number of bytes written in policy configs as a number (65536) or a string with a
// unit ("64KiB", "1 MiB", "10MB", "512B"): B, KiB, MiB, GiB, KB, MB or GB.
type Size int64

// MarshalJSON writes the size as a number of bytes.
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(int64(s)) }

// UnmarshalJSON reads a number or a string with a unit.
func (s *Size) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		if n < 0 {
			return errors.New("size must not be negative")
		}
		*s = Size(n)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New(`want a size such as 65536 or "64KiB"`)
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// sizeUnits are tried in order; "B" comes last since every other unit ends with it.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses "64KiB", "1 MiB", "10MB", "512B" and "512" into bytes. Units are
// case-sensitive, as a lowercase "b" conventionally means bits.
func ParseSize(str string) (int64, error) {
	t := strings.TrimSpace(str)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || t == "" || t[0] == '+' || n > (1<<62)/mult {
		return 0, fmt.Errorf(`invalid size %q: want e.g. 65536, "64KiB" or "1MiB"`, str)
	}
	return n * mult, nil
}
