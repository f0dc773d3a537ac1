package bodylimit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Config is the configuration of the body_limit policy.
type Config struct {
	// Max is the largest request body allowed, in bytes: a number (1048576) or a size with a
	// unit ("1MiB", "512KiB", "10MB"). Required.
	Max Size `json:"max"`
}

// Validate checks that Max is set.
func (c *Config) Validate() error {
	if c.Max <= 0 {
		return errors.New(`max is required: a size such as "1MiB" or 1048576 (bytes), greater than zero`)
	}
	return nil
}

// Size is a number of bytes written as a number or a string with a unit (B, KiB, MiB, GiB, KB,
// MB, GB). Policies cannot use the config package's type, so this is the policy's own.
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

// ParseSize parses "64KiB", "1 MiB", "10MB", "512B" and "512". Units are case-sensitive, as a
// lowercase "b" conventionally means bits.
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
		return 0, fmt.Errorf("invalid size %q: want e.g. 65536, \"64KiB\" or \"1MiB\"", str)
	}
	return n * mult, nil
}
