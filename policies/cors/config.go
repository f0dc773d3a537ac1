package cors

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the cors policy (the Fetch standard's CORS protocol,
// https://fetch.spec.whatwg.org/#http-cors-protocol).
type Config struct {
	// AllowOrigins lists the origins allowed, exactly as browsers send them
	// ("https://app.example.com", scheme and host in lowercase, no path, the port only when it
	// is not the scheme's default). "*" allows every origin and is refused with
	// allow_credentials. "null" is refused: sandboxed documents and local files all share it.
	AllowOrigins []string `json:"allow_origins,omitempty"`
	// AllowOriginPatterns lists origins with wildcards: "*" stands for exactly one DNS label of
	// letters, digits and hyphens ("https://*.example.com" matches https://app.example.com but
	// neither https://example.com nor https://a.b.example.com), and a port of "*" for any port
	// ("http://localhost:*"). The two rightmost labels must be literal (a single "localhost"
	// excepted), so a pattern cannot cover a whole top-level domain.
	AllowOriginPatterns []string `json:"allow_origin_patterns,omitempty"`
	// AllowMethods lists the methods a preflight may ask for. Default [GET, HEAD, POST], the
	// methods browsers never preflight. "*" allows any method and is refused with
	// allow_credentials. Methods are case-sensitive and written in uppercase.
	AllowMethods []string `json:"allow_methods,omitempty"`
	// AllowHeaders lists the request headers a preflight may ask for (case-insensitive).
	// Default none: a request with non-safelisted headers (including Content-Type:
	// application/json) is refused until they are listed. "*" allows any header and is refused
	// with allow_credentials.
	AllowHeaders []string `json:"allow_headers,omitempty"`
	// ExposeHeaders lists the response headers scripts may read beyond the safelisted ones.
	// "*" exposes all and is refused with allow_credentials.
	ExposeHeaders []string `json:"expose_headers,omitempty"`
	// AllowCredentials lets requests carry cookies and HTTP authentication
	// (Access-Control-Allow-Credentials: true). Wildcards are then refused, as browsers ignore them.
	AllowCredentials bool `json:"allow_credentials,omitempty"`
	// MaxAge is how long browsers may cache a preflight answer ("10m"), in whole seconds. Not
	// sent when unset; browsers then cache for 5s and cap what they are given (Chromium at 2h).
	MaxAge *policy.Duration `json:"max_age,omitempty"`
	// AllowPrivateNetwork answers Private Network Access preflights
	// (Access-Control-Request-Private-Network) from public sites to a gateway on a private
	// network.
	AllowPrivateNetwork bool `json:"allow_private_network,omitempty"`
}

// Validate checks origins, patterns, methods and headers, and the wildcard-with-credentials rules
// browsers enforce (a credentialed response with a wildcard is rejected by the browser, so it is
// rejected here first).
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

// compile checks c and returns what the policy serves from.
func (c *Config) compile() (*cors, error) {
	p := &cors{credentials: c.AllowCredentials, privateNetwork: c.AllowPrivateNetwork, origins: map[string]struct{}{}}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.AllowOrigins) == 0 && len(c.AllowOriginPatterns) == 0 {
		bad("allow_origins or allow_origin_patterns is required")
	}
	for i, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				bad(`allow_origins[%d]: "*" cannot be used with allow_credentials: browsers reject it; list the origins`, i)
			}
			p.anyOrigin = true
			continue
		}
		norm, err := parseOrigin(o)
		if err != nil {
			bad("allow_origins[%d]: %w", i, err)
			continue
		}
		p.origins[norm] = struct{}{}
	}
	for i, s := range c.AllowOriginPatterns {
		pt, err := compilePattern(s)
		if err != nil {
			bad("allow_origin_patterns[%d]: %w", i, err)
			continue
		}
		p.patterns = append(p.patterns, pt)
	}
	methods := c.AllowMethods
	if len(methods) == 0 {
		methods = []string{"GET", "HEAD", "POST"}
	}
	for i, m := range methods {
		switch {
		case m == "*":
			if c.AllowCredentials {
				bad(`allow_methods[%d]: "*" cannot be used with allow_credentials: browsers take it literally; list the methods`, i)
			}
			p.anyMethod = true
		case !httpx.ValidToken(m):
			bad("allow_methods[%d]: %q is not a valid method", i, m)
		case m != strings.ToUpper(m):
			bad("allow_methods[%d]: write %q in uppercase (%q): methods are case-sensitive", i, m, strings.ToUpper(m))
		default:
			p.methods = append(p.methods, m)
		}
	}
	for i, h := range c.AllowHeaders {
		switch {
		case h == "*":
			if c.AllowCredentials {
				bad(`allow_headers[%d]: "*" cannot be used with allow_credentials: browsers take it literally; list the headers`, i)
			}
			p.anyHeader = true
		case !httpx.ValidToken(h):
			bad("allow_headers[%d]: %q is not a valid header name", i, h)
		default:
			p.headers = append(p.headers, h)
		}
	}
	for i, h := range c.ExposeHeaders {
		switch {
		case h == "*" && c.AllowCredentials:
			bad(`expose_headers[%d]: "*" cannot be used with allow_credentials: browsers take it literally; list the headers`, i)
		case h != "*" && !httpx.ValidToken(h):
			bad("expose_headers[%d]: %q is not a valid header name", i, h)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.finish(c)
	return p, nil
}

// parseOrigin checks that s is a serialized origin (scheme "://" host [":" port]) and returns
// it as browsers send it: default ports removed. Anything else (a path, a trailing slash,
// userinfo, uppercase) would never match a browser's Origin header, so it is an error that says
// what to write instead.
func parseOrigin(s string) (string, error) {
	if s == "null" {
		return "", errors.New(`"null" cannot be allowed: sandboxed iframes and local files of any site send it`)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return "", fmt.Errorf("%q is not an origin: want scheme://host[:port], e.g. https://app.example.com", s)
	}
	if rest == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return "", fmt.Errorf("%q is not an origin: it has a path, query or fragment; write %q", s, scheme+"://"+rest[:i])
	}
	if strings.Contains(rest, "@") {
		return "", fmt.Errorf("%q is not an origin: origins have no user information", s)
	}
	host, port := splitHostPort(rest)
	if port != "" && !validPort(port) {
		return "", fmt.Errorf("%q has an invalid port", s)
	}
	if !validHost(host) {
		return "", fmt.Errorf("%q has an invalid host (IDNs are written in punycode, xn--...)", s)
	}
	if s != strings.ToLower(s) {
		return "", fmt.Errorf("write %q in lowercase (%q): browsers send origins in lowercase and they are compared exactly", s, strings.ToLower(s))
	}
	if defaultPort(scheme) == port {
		port = ""
	}
	out := scheme + "://" + host
	if port != "" {
		out += ":" + port
	}
	return out, nil
}

// splitHostPort splits "host:port", "[v6]:port", "host" or "[v6]".
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		if i := strings.LastIndex(s, "]"); i >= 0 {
			if rest := s[i+1:]; strings.HasPrefix(rest, ":") {
				return s[:i+1], rest[1:]
			}
			return s, ""
		}
		return s, ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

func validScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validPort accepts a port as browsers serialize it: 0-65535 without leading zeros.
func validPort(s string) bool {
	if !digits(s) || (len(s) > 1 && s[0] == '0') {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n <= 65535
}

// digits reports whether s is one to five decimal digits.
func digits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// validHost accepts DNS names (letters, digits, hyphens, dots) and bracketed IPv6 literals.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") || len(h) < 3 {
			return false
		}
		for i := 1; i < len(h)-1; i++ {
			if c := h[i]; !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		return true
	}
	if h == "" {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		if !isLabelChar(l[i]) {
			return false
		}
	}
	return true
}

func isLabelChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '-' || c == '_'
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
