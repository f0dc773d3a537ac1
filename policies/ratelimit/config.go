package ratelimit

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the rate_limit policy: one or more rates applied together to
// each key (a client IP, a consumer, a header value, or a combination).
type Config struct {
	// Key names what is counted, each part one of client_ip, consumer, route, header:NAME or
	// claim:NAME; several parts are combined ("consumer" and "route": one budget per consumer
	// per route). Default [client_ip].
	Key []string `json:"key,omitempty"`
	// Limits are the rates, all applied: a request is admitted only when every one admits it,
	// and a refused request consumes none of them.
	Limits []LimitConfig `json:"limits"`
	// IPv6Prefix is the prefix length IPv6 client addresses are grouped by (a client usually
	// owns a whole /64). Default 64.
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`
	// MaxKeys bounds the keys tracked (oldest recovered ones are forgotten first). Default
	// 100000.
	MaxKeys int `json:"max_keys,omitempty"`
	// Headers sends RateLimit-Policy and RateLimit (IETF httpapi draft) on every response.
	// Default true.
	Headers *bool `json:"headers,omitempty"`
	// MissingKey decides requests whose key cannot be built (no consumer, no such header):
	// allow (default: the limit does not apply) or deny.
	MissingKey string `json:"missing_key,omitempty"`
	// Backend is local (default: counters in this process) or redis (counters shared by every
	// node through the top-level state.redis, one round trip per request).
	Backend string `json:"backend,omitempty"`
	// OnError is what a redis-backed limit does while Redis is unreachable: local (default:
	// enforce the limits in this process alone), allow, or deny (503).
	OnError string `json:"on_error,omitempty"`
	// LocalPrecheck checks the limits in this process before asking Redis: a request this node
	// alone already refuses is refused without a round trip.
	LocalPrecheck bool `json:"local_precheck,omitempty"`
}

// LimitConfig is one rate.
type LimitConfig struct {
	// Requests admitted per Per.
	Requests int `json:"requests"`
	// Per is the period ("1s", "1m", "24h").
	Per policy.Duration `json:"per"`
	// Burst is how many requests may arrive at once. Default Requests.
	Burst int `json:"burst,omitempty"`
	// Name labels the limit in the RateLimit headers. Default e.g. "20-per-1s".
	Name string `json:"name,omitempty"`
}

// Validate checks the key parts and the limits, and fills defaults.
func (c *Config) Validate() error {
	if len(c.Key) == 0 {
		c.Key = []string{"client_ip"}
	}
	for i, k := range c.Key {
		switch name, arg, _ := strings.Cut(k, ":"); name {
		case "client_ip", "consumer", "route":
			if arg != "" {
				return fmt.Errorf("key[%d]: %q takes no argument", i, name)
			}
		case "header", "claim":
			if arg == "" {
				return fmt.Errorf("key[%d]: %s needs a name, e.g. %s:X-Tenant", i, name, name)
			}
		default:
			return fmt.Errorf("key[%d]: unknown key part %q (want client_ip, consumer, route, header:NAME or claim:NAME)", i, k)
		}
	}
	if len(c.Limits) == 0 {
		return errors.New("limits: at least one rate is required, e.g. {requests: 20, per: 1s}")
	}
	names := map[string]bool{}
	for i := range c.Limits {
		l := &c.Limits[i]
		switch {
		case l.Requests <= 0:
			return fmt.Errorf("limits[%d].requests must be positive", i)
		case l.Per.D() < time.Millisecond:
			return fmt.Errorf("limits[%d].per must be at least 1ms", i)
		case l.Per.D()/time.Duration(l.Requests) == 0:
			return fmt.Errorf("limits[%d]: more than one request per nanosecond is not a limit", i)
		case l.Burst < 0:
			return fmt.Errorf("limits[%d].burst must not be negative", i)
		}
		if l.Burst == 0 {
			l.Burst = l.Requests
		}
		if l.Name == "" {
			l.Name = fmt.Sprintf("%d-per-%s", l.Requests, l.Per.D())
		}
		if strings.ContainsAny(l.Name, "\",;\\ ") || names[l.Name] {
			return fmt.Errorf("limits[%d].name %q must be unique and free of quotes, commas, semicolons and spaces", i, l.Name)
		}
		names[l.Name] = true
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = 64
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		return errors.New("ipv6_prefix must be between 1 and 128")
	}
	if c.Headers == nil {
		t := true
		c.Headers = &t
	}
	switch c.Backend {
	case "":
		c.Backend = "local"
	case "local", "redis":
	default:
		return fmt.Errorf("backend %q: want local or redis", c.Backend)
	}
	switch c.OnError {
	case "":
		c.OnError = "local"
	case "local", "allow", "deny":
	default:
		return fmt.Errorf("on_error %q: want local, allow or deny", c.OnError)
	}
	if c.Backend == "local" && c.LocalPrecheck {
		return errors.New("local_precheck applies to backend: redis")
	}
	switch c.MissingKey {
	case "":
		c.MissingKey = "allow"
	case "allow", "deny":
	default:
		return fmt.Errorf("missing_key %q: want allow or deny", c.MissingKey)
	}
	return nil
}
