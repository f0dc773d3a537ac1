package breaker

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the circuit_breaker policy. The breaker trips on consecutive
// failures, or on a failure ratio over a rolling window once enough requests were seen; while
// open it answers at once with the fallback; after open_for it lets a few probes through
// (half-open) and closes again when they succeed.
type Config struct {
	// ConsecutiveFailures trips the breaker after this many failures in a row. Default 5 when
	// failure_ratio is not set.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// FailureRatio (0 < r <= 1) trips the breaker when this share of the window's requests failed.
	FailureRatio float64 `json:"failure_ratio,omitempty"`
	// MinRequests is the volume a window needs before failure_ratio applies. Default 20.
	MinRequests int `json:"min_requests,omitempty"`
	// Window is the rolling window failure_ratio is computed over. Default 10s.
	Window *policy.Duration `json:"window,omitempty"`
	// SlowCall counts a request whose response headers take longer than this as a failure.
	SlowCall *policy.Duration `json:"slow_call,omitempty"`
	// OpenFor is how long the breaker stays open before probing. Default 30s.
	OpenFor *policy.Duration `json:"open_for,omitempty"`
	// HalfOpenRequests is how many probes may run while half-open. Default 1.
	HalfOpenRequests int `json:"half_open_requests,omitempty"`
	// FailureStatuses are the response statuses that count as failures. Default [500, 502, 503,
	// 504]; the gateway's own upstream errors (connect failures, timeouts) always count.
	FailureStatuses []int `json:"failure_statuses,omitempty"`
	// Fallback is the response while the breaker is open. Default: 503 problem+json
	// circuit_open with Retry-After.
	Fallback *Fallback `json:"fallback,omitempty"`
}

// Fallback is a fixed response served while the breaker is open.
type Fallback struct {
	// Status is the response status. Default 503.
	Status int `json:"status,omitempty"`
	// Body is the response body.
	Body string `json:"body,omitempty"`
	// Headers are response headers (Content-Type, Cache-Control, ...).
	Headers map[string]string `json:"headers,omitempty"`
}

// Validate checks the thresholds and fills defaults.
func (c *Config) Validate() error {
	dur := func(p **policy.Duration, def time.Duration) {
		if *p == nil {
			d := policy.Duration(def)
			*p = &d
		}
	}
	switch {
	case c.ConsecutiveFailures < 0:
		return errors.New("consecutive_failures must not be negative")
	case c.FailureRatio < 0 || c.FailureRatio > 1:
		return errors.New("failure_ratio must be between 0 and 1")
	case c.MinRequests < 0 || c.HalfOpenRequests < 0:
		return errors.New("min_requests and half_open_requests must not be negative")
	}
	if c.ConsecutiveFailures == 0 && c.FailureRatio == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.HalfOpenRequests == 0 {
		c.HalfOpenRequests = 1
	}
	dur(&c.Window, 10*time.Second)
	dur(&c.OpenFor, 30*time.Second)
	if c.Window.D() < 100*time.Millisecond || c.OpenFor.D() < 100*time.Millisecond {
		return errors.New("window and open_for must be at least 100ms")
	}
	if c.SlowCall != nil && c.SlowCall.D() <= 0 {
		return errors.New("slow_call must be positive")
	}
	if len(c.FailureStatuses) == 0 {
		c.FailureStatuses = []int{500, 502, 503, 504}
	}
	for i, s := range c.FailureStatuses {
		if s < 100 || s > 599 {
			return fmt.Errorf("failure_statuses[%d]: %d is not an HTTP status", i, s)
		}
	}
	if f := c.Fallback; f != nil {
		if f.Status == 0 {
			f.Status = http.StatusServiceUnavailable
		}
		if f.Status < 200 || f.Status > 599 {
			return fmt.Errorf("fallback.status %d: want 200..599", f.Status)
		}
	}
	return nil
}
