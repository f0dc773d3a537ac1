package config

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Duration is a Go duration written as a string ("1500ms", "30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string. Bare numbers are rejected: "30" is ambiguous.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"1500ms\" or \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want e.g. \"1500ms\" or \"30s\"", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size in bytes, written as a number or with a unit (B, KiB, MiB, GiB, KB, MB,
// GB): the same type, and the same parser, as policy configs use.
type ByteSize = policy.Size

// Percent is a share written as "20%" or a number 0-100.
type Percent float64

// MarshalJSON writes the percent as a string.
func (p Percent) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatFloat(float64(p), 'f', -1, 64) + "%")
}

// UnmarshalJSON reads "20%" or 20.
func (p *Percent) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("want a percentage such as \"20%%\"")
		}
		f, err = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
		if err != nil {
			return fmt.Errorf("invalid percentage %q: want e.g. \"20%%\"", s)
		}
	}
	if f < 0 || f > 100 {
		return fmt.Errorf("percentage %v is outside 0-100", f)
	}
	*p = Percent(f)
	return nil
}
