package bodylimit

import (
	"errors"

	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the body_limit policy.
type Config struct {
	// Max is the largest request body allowed, in bytes: a number (1048576) or a size with a
	// unit ("1MiB", "512KiB", "10MB"). Required.
	Max policy.Size `json:"max"`
}

// Validate checks that Max is set.
func (c *Config) Validate() error {
	if c.Max <= 0 {
		return errors.New(`max is required: a size such as "1MiB" or 1048576 (bytes), greater than zero`)
	}
	return nil
}
