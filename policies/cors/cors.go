// Package cors provides the cors policy: it answers CORS preflight requests at the gateway and
// adds CORS headers to the responses of allowed origins (https://fetch.spec.whatwg.org/#http-cors-protocol).
//
// The headers of an actual request are set before the rest of the chain runs, so they are still
// there when a later policy refuses the request (a 401 or 429 the browser's script can read) or
// the upstream fails: the server's error renderer keeps headers already set. A request from an
// origin that is not allowed goes on without CORS headers and the browser withholds the
// response from the script; only a preflight is refused at the gateway.
//
// Header values that do not depend on the request are built once; per-request values reuse the
// request's own header slices. Those shared slices have no spare capacity, so appending to them
// copies; nothing in Limen writes a header slice's elements in place.
package cors

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "cors"

func init() {
	policy.Register(Kind, policy.At(policy.Edge), func(_ policy.BuildContext, c *Config) (policy.Policy, error) {
		return c.compile()
	})
}

var _ policy.Policy = (*cors)(nil)

// cors is a provisioned cors policy.
type cors struct {
	anyOrigin, anyMethod, anyHeader bool
	credentials, privateNetwork     bool
	origins                         map[string]struct{}
	patterns                        []pattern
	methods                         []string
	headers                         []string

	// Prebuilt header values, each a one-element slice without spare capacity.
	star, credTrue, allowMethods, allowHeaders, expose, maxAge, vary, preflightVary []string
}

// The refusals of a preflight. They are shared, read-only values; details are constant so a
// client cannot make the gateway echo what it sent.
var (
	errOrigin  = &policy.Error{Status: http.StatusForbidden, Code: "cors_forbidden", Detail: "the origin is not allowed"}
	errMethod  = &policy.Error{Status: http.StatusForbidden, Code: "cors_forbidden", Detail: "the requested method is not allowed"}
	errHeaders = &policy.Error{Status: http.StatusForbidden, Code: "cors_forbidden", Detail: "a requested header is not allowed"}
)

func one(s string) []string { return []string{s}[:1:1] }

// finish builds the constant header values.
func (p *cors) finish(c *Config) {
	p.star = one("*")
	p.credTrue = one("true")
	p.allowMethods = one(strings.Join(p.methods, ", "))
	if len(p.headers) > 0 {
		p.allowHeaders = one(strings.Join(p.headers, ", "))
	}
	if len(c.ExposeHeaders) > 0 {
		p.expose = one(strings.Join(c.ExposeHeaders, ", "))
	}
	if c.MaxAge != nil {
		p.maxAge = one(strconv.FormatInt(int64(time.Duration(*c.MaxAge)/time.Second), 10))
	}
	p.vary = one("Origin")
	pv := "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
	if p.privateNetwork {
		pv += ", Access-Control-Request-Private-Network"
	}
	p.preflightVary = one(pv)
}

// Wrap returns the handler that answers preflights and decorates actual requests.
func (p *cors) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		h := w.Header()
		origin := r.Header["Origin"]
		if r.Method == http.MethodOptions && len(origin) > 0 && len(r.Header["Access-Control-Request-Method"]) > 0 {
			return p.preflight(w, h, r, origin)
		}
		// Vary: Origin on every response, allowed or not, so a shared cache never serves one
		// origin's answer (with or without CORS headers) to another.
		addVary(h, p.vary)
		if len(origin) == 1 && p.allowed(origin[0]) {
			p.allowOrigin(h, origin)
			if p.expose != nil {
				h["Access-Control-Expose-Headers"] = p.expose
			}
		}
		return next.ServeHTTP(w, r)
	})
}

// preflight answers an OPTIONS request that carries Origin and Access-Control-Request-Method:
// 204 with the CORS headers, or a 403 cors_forbidden error.
func (p *cors) preflight(w http.ResponseWriter, h http.Header, r *http.Request, origin []string) error {
	addVary(h, p.preflightVary)
	if len(origin) != 1 || !p.allowed(origin[0]) {
		return errOrigin
	}
	reqMethod := r.Header["Access-Control-Request-Method"]
	if len(reqMethod) != 1 || !p.methodAllowed(reqMethod[0]) {
		return errMethod
	}
	reqHeaders := r.Header["Access-Control-Request-Headers"]
	if !p.headersAllowed(reqHeaders) {
		return errHeaders
	}
	p.allowOrigin(h, origin)
	if p.anyMethod {
		h["Access-Control-Allow-Methods"] = reqMethod[:1:1]
	} else {
		h["Access-Control-Allow-Methods"] = p.allowMethods
	}
	switch {
	case p.anyHeader && len(reqHeaders) > 0:
		// Reflect rather than answer "*": the wildcard never covers Authorization.
		h["Access-Control-Allow-Headers"] = reqHeaders[:len(reqHeaders):len(reqHeaders)]
	case p.allowHeaders != nil:
		h["Access-Control-Allow-Headers"] = p.allowHeaders
	}
	if p.maxAge != nil {
		h["Access-Control-Max-Age"] = p.maxAge
	}
	if p.privateNetwork {
		if v := r.Header["Access-Control-Request-Private-Network"]; len(v) == 1 && v[0] == "true" {
			h["Access-Control-Allow-Private-Network"] = p.credTrue
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// allowOrigin sets Access-Control-Allow-Origin (and -Credentials) for an allowed origin.
func (p *cors) allowOrigin(h http.Header, origin []string) {
	if p.anyOrigin && !p.credentials {
		h["Access-Control-Allow-Origin"] = p.star
		return
	}
	h["Access-Control-Allow-Origin"] = origin[:1:1]
	if p.credentials {
		h["Access-Control-Allow-Credentials"] = p.credTrue
	}
}

// allowed reports whether origin may make cross-origin requests.
func (p *cors) allowed(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	if p.anyOrigin {
		return true
	}
	if _, ok := p.origins[origin]; ok {
		return true
	}
	for i := range p.patterns {
		if p.patterns[i].match(origin) {
			return true
		}
	}
	return false
}

// methodAllowed reports whether a preflight may ask for m. GET, HEAD and POST are always
// allowed: browsers send them without a preflight anyway (Fetch, CORS-safelisted methods).
func (p *cors) methodAllowed(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost:
		return true
	}
	if p.anyMethod {
		return httpx.ValidToken(m)
	}
	for _, a := range p.methods {
		if a == m {
			return true
		}
	}
	return false
}

// headersAllowed reports whether every header named in the Access-Control-Request-Headers
// values is allowed. It splits the comma-separated lists in place, without allocating.
func (p *cors) headersAllowed(values []string) bool {
	for _, v := range values {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			name = strings.Trim(name, " \t")
			if name == "" {
				continue
			}
			if !httpx.ValidToken(name) {
				return false
			}
			if p.anyHeader {
				continue
			}
			ok := false
			for _, a := range p.headers {
				if strings.EqualFold(a, name) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// addVary adds v to the Vary header, sharing the prebuilt slice when there is none yet.
func addVary(h http.Header, v []string) {
	if old, ok := h["Vary"]; ok {
		h["Vary"] = append(old, v[0])
	} else {
		h["Vary"] = v
	}
}
