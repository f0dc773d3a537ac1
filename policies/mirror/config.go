package mirror

import (
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the mirror policy: where copies of a route's requests go,
// how many of them, and how much a copy may cost.
type Config struct {
	// URL is the shadow service's absolute http:// or https:// base URL; each request's path
	// and query are appended to it ("http://shadow:8080/v2" + "/orders?page=2"). Prefer https
	// or a private network: the copies carry the callers' credentials. Required.
	URL string `json:"url"`
	// Percent is the share of requests copied, above 0 and at most 100 (fractions such as 0.5
	// are allowed). Each request is sampled independently at random. Default 100.
	Percent *float64 `json:"percent,omitempty"`
	// Timeout bounds each copy, connecting and reading the answer included; a copy outlives
	// its request by at most this long. Default 2s, at most 1m.
	Timeout *policy.Duration `json:"timeout,omitempty"`
	// MaxConcurrency is the most copies in flight at once for this policy instance; a sampled
	// request that finds them all taken is not copied (counted as dropped), never queued.
	// 0 or omitted means 64; at most 10000.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// MaxBody is the largest request body copied: a number of bytes or a size such as "64KiB".
	// Requests with a larger body, or a body of unknown length (chunked), are not copied.
	// Default 64KiB, at most 16MiB.
	MaxBody policy.Size `json:"max_body,omitempty"`
	// CA is a PEM bundle trusted for an https URL besides the system roots, relative to the
	// config's directory.
	CA policy.File `json:"ca,omitempty"`
	// Headers are set on every copy, replacing the client's values of the same name; an empty
	// value removes the header from the copy instead (Authorization: "" keeps credentials
	// away from the shadow service). The copy always carries X-Limen-Mirror: 1 unless this
	// sets another value for it, so the shadow service (and what it calls) can tell copies
	// from real traffic.
	Headers map[string]string `json:"headers,omitempty"`
}

// MarkerHeader is set on every copy so the shadow service can recognise mirrored traffic.
const MarkerHeader = "X-Limen-Mirror"

// The defaults and bounds of the config.
const (
	defaultTimeout        = 2 * time.Second
	maxTimeout            = time.Minute
	defaultMaxConcurrency = 64
	maxConcurrencyLimit   = 10000
	defaultMaxBody        = 64 << 10
	// maxBodyLimit bounds max_body: up to max_concurrency bodies are held in memory while
	// their copies are in flight.
	maxBodyLimit = 16 << 20
)

// reserved explains why a header cannot be set on the copy.
var reserved = map[string]string{
	// Hop-by-hop fields (RFC 9110 §7.6.1) describe one connection, never the next.
	"Connection":          "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Keep-Alive":          "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Proxy-Connection":    "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Proxy-Authenticate":  "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Proxy-Authorization": "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Te":                  "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Trailer":             "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Transfer-Encoding":   "is a hop-by-hop header (RFC 9110 §7.6.1)",
	"Upgrade":             "is a hop-by-hop header (RFC 9110 §7.6.1)",
	// Framing and the target belong to each message.
	"Host":           "is set to the shadow service's host",
	"Content-Length": "is the copy's own framing",
	"Expect":         "is the copy's own framing",
}

// Validate checks the URL, the numbers and the headers, and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	https := false
	if c.URL == "" {
		fail("url is required: the shadow service's http:// or https:// base URL")
	} else if ok, err := outbound.CheckURL(c.URL); err != nil {
		fail("%v", err)
	} else {
		https = ok
	}

	if c.Percent == nil {
		p := 100.0
		c.Percent = &p
	} else if p := *c.Percent; !(p > 0 && p <= 100) {
		fail("percent %v: want above 0 and at most 100 (to stop mirroring, remove the policy)", p)
	}

	if c.Timeout == nil {
		d := policy.Duration(defaultTimeout)
		c.Timeout = &d
	} else if c.Timeout.D() <= 0 {
		fail("timeout must be greater than zero")
	} else if c.Timeout.D() > maxTimeout {
		fail("timeout above 1m: copies hold memory and a reload waits for them")
	}

	switch {
	case c.MaxConcurrency == 0:
		c.MaxConcurrency = defaultMaxConcurrency
	case c.MaxConcurrency < 0:
		fail("max_concurrency must not be negative")
	case c.MaxConcurrency > maxConcurrencyLimit:
		fail("max_concurrency above 10000: each copy in flight holds a goroutine, a connection and its body")
	}

	if c.MaxBody == 0 {
		c.MaxBody = defaultMaxBody
	} else if c.MaxBody > maxBodyLimit {
		fail("max_body above 16MiB: bodies are held in memory while their copies are in flight")
	}

	if c.CA != "" && !https {
		fail("ca applies to an https url only")
	}

	headers := make(map[string]string, len(c.Headers)+1)
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	slices.Sort(names) // errors in a stable order
	for _, name := range names {
		v := c.Headers[name]
		if !httpx.ValidToken(name) {
			fail("headers: %q is not a header name", name)
			continue
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if why, ok := reserved[canon]; ok {
			fail("headers: %s %s", canon, why)
			continue
		}
		if _, dup := headers[canon]; dup {
			fail("headers: %s is given twice (header names are case-insensitive)", canon)
			continue
		}
		if !httpx.ValidFieldValue(v) {
			fail("headers: the value of %s holds a control character", canon)
			continue
		}
		headers[canon] = v
	}
	if _, ok := headers[MarkerHeader]; !ok {
		headers[MarkerHeader] = "1"
	}
	c.Headers = headers
	return errors.Join(errs...)
}
