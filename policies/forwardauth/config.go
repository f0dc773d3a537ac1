package forwardauth

import (
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the forward_auth policy: the external service asked about
// every request, what it is sent, and what of its answer reaches the upstream.
type Config struct {
	// URL is the auth service's absolute http:// or https:// URL. Prefer https (or a loopback
	// or private address): the copied request headers carry the caller's credentials.
	// Required.
	URL string `json:"url"`
	// Method is the method of the auth request. Default GET; the original request's method is
	// sent in X-Forwarded-Method whatever this is. With forward_body, POST, PUT or PATCH.
	Method string `json:"method,omitempty"`
	// RequestHeaders lists the client's request headers copied to the auth request. Default
	// [Authorization, Cookie]; an empty list copies none. Hop-by-hop headers and the
	// forwarding headers the gateway sets itself cannot be listed.
	RequestHeaders []string `json:"request_headers,omitempty"`
	// ResponseHeaders lists headers of the auth service's 2xx answer that are set on the
	// request sent upstream (X-Auth-User, X-Auth-Groups). Clients' own copies of these
	// headers are always removed first, whether or not the auth service is asked and whatever
	// it answers, so a client cannot forge them.
	ResponseHeaders []string `json:"response_headers,omitempty"`
	// IdentityHeader names a header of the auth service's 2xx answer whose value identifies
	// the caller (the principal, method "forward_auth"). When a consumer has that name, the
	// caller is that consumer (its groups and plan apply). Clients' own copies are removed.
	IdentityHeader string `json:"identity_header,omitempty"`
	// Timeout bounds the whole auth call, connecting and reading the answer included.
	// Default 5s.
	Timeout *policy.Duration `json:"timeout,omitempty"`
	// CA is a PEM bundle trusted for an https URL besides the system roots, relative to the
	// config's directory.
	CA policy.File `json:"ca,omitempty"`
	// ForwardBody sends the request body (up to max_body bytes) to the auth service too; the
	// upstream still gets the whole body. A larger body is refused with 413.
	ForwardBody bool `json:"forward_body,omitempty"`
	// MaxBody is the largest body forward_body buffers: a number of bytes or a size such as
	// "64KiB" or "1MiB". Default 64KiB, at most 16MiB.
	MaxBody policy.Size `json:"max_body,omitempty"`
	// CacheTTL, when set, is how long an allowing (2xx) answer is remembered for requests with
	// the same method, host, path, query, copied request headers (and body, with
	// forward_body). Refusals are never cached. Default 0: ask on every request.
	CacheTTL *policy.Duration `json:"cache_ttl,omitempty"`
}

// maxBodyLimit bounds max_body: the body is held in memory for every request in flight.
const maxBodyLimit = 16 << 20

// methods are the auth request methods accepted; bodyMethods those that may carry a body.
var (
	methods     = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	bodyMethods = []string{"POST", "PUT", "PATCH"}
)

// reserved explains why a header cannot be copied to the auth request or from its answer.
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
	// Framing belongs to each message.
	"Host":           "is the message's own target",
	"Content-Length": "is the message's own framing",
	// The gateway sets these from what it verified; copies would be forgeries.
	"X-Forwarded-For":    "is set by the gateway from the trusted client IP",
	"X-Forwarded-Host":   "is set by the gateway",
	"X-Forwarded-Proto":  "is set by the gateway",
	"X-Forwarded-Method": "is set by the gateway",
	"X-Forwarded-Uri":    "is set by the gateway",
	"Forwarded":          "is set by the gateway",
	"X-Request-Id":       "is set by the gateway",
}

// Validate checks the URL, method and header lists, and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	https := false
	if c.URL == "" {
		fail("url is required: the auth service's http:// or https:// URL")
	} else if ok, err := outbound.CheckURL(c.URL); err != nil {
		fail("%v", err)
	} else {
		https = ok
	}

	if c.Method == "" {
		c.Method = "GET"
	}
	if !slices.Contains(methods, c.Method) {
		fail("method %q: want one of %s (methods are case-sensitive, RFC 9110 §9.1)", c.Method, strings.Join(methods, ", "))
	}
	if c.ForwardBody && !slices.Contains(bodyMethods, c.Method) {
		fail("forward_body needs method POST, PUT or PATCH: many servers ignore a %s request's body", c.Method)
	}

	if c.RequestHeaders == nil {
		c.RequestHeaders = []string{"Authorization", "Cookie"}
	}
	c.RequestHeaders = headerList("request_headers", c.RequestHeaders, fail)
	c.ResponseHeaders = headerList("response_headers", c.ResponseHeaders, fail)
	for _, h := range c.ResponseHeaders {
		if slices.Contains(c.RequestHeaders, h) {
			fail("%s is in both request_headers and response_headers: clients' copies of response headers are removed, so it could never be sent", h)
		}
	}
	if c.IdentityHeader != "" {
		if l := headerList("identity_header", []string{c.IdentityHeader}, fail); len(l) == 1 {
			c.IdentityHeader = l[0]
		}
		if slices.Contains(c.RequestHeaders, c.IdentityHeader) {
			fail("identity_header %s is also in request_headers: clients' copies are removed, so it could never be sent", c.IdentityHeader)
		}
	}

	if c.Timeout == nil {
		d := policy.Duration(5 * time.Second)
		c.Timeout = &d
	} else if c.Timeout.D() <= 0 {
		fail("timeout must be greater than zero")
	}
	if c.CA != "" && !https {
		fail("ca applies to an https url only")
	}
	if c.MaxBody == 0 {
		c.MaxBody = 64 << 10
	} else if c.MaxBody > maxBodyLimit {
		fail("max_body above 16MiB: the body is held in memory while the auth service decides")
	}
	if c.CacheTTL == nil {
		d := policy.Duration(0)
		c.CacheTTL = &d
	}
	return errors.Join(errs...)
}

// headerList canonicalizes header names and refuses malformed and reserved ones.
func headerList(field string, names []string, fail func(string, ...any)) []string {
	out := make([]string, 0, len(names))
	for i, n := range names {
		if !httpx.ValidToken(n) {
			fail("%s[%d]: %q is not a header name", field, i, n)
			continue
		}
		n = textproto.CanonicalMIMEHeaderKey(n)
		if why, ok := reserved[n]; ok {
			fail("%s[%d]: %s %s", field, i, n, why)
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
