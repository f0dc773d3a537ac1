// Package authn holds what the authentication policies share: where a credential is read from
// (header, query parameter, cookie) and how it is removed before the request goes upstream, the
// anonymous fallback, and 401 challenges.
package authn

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/limen-gateway/limen/policy"
)

// Source is one place a credential may be carried. Exactly one of Header, Query and Cookie is set.
type Source struct {
	// Header is a request header name ("X-API-Key", "Authorization").
	Header string `json:"header,omitempty"`
	// Prefix is stripped from the header value and required to be there, compared without
	// regard to case ("Bearer ", "ApiKey ").
	Prefix string `json:"prefix,omitempty"`
	// Query is a query parameter name. Keys in URLs end up in logs and browser history: prefer a
	// header.
	Query string `json:"query,omitempty"`
	// Cookie is a cookie name.
	Cookie string `json:"cookie,omitempty"`
}

// Validate checks that exactly one place is named.
func (s *Source) Validate() error {
	n := 0
	for _, v := range []string{s.Header, s.Query, s.Cookie} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("set exactly one of header, query and cookie")
	}
	if s.Prefix != "" && s.Header == "" {
		return errors.New("prefix applies to a header only")
	}
	if s.Header != "" {
		s.Header = textproto.CanonicalMIMEHeaderKey(s.Header)
	}
	return nil
}

func (s *Source) String() string {
	switch {
	case s.Header != "":
		return "header " + s.Header
	case s.Query != "":
		return "query parameter " + s.Query
	}
	return "cookie " + s.Cookie
}

// Found is a credential read from a request.
type Found struct {
	Value  string
	Source *Source
}

// Read returns the first credential present in r among sources, in order. A source that is
// present but empty, or present twice, counts as present with an empty value, so a malformed
// credential is refused rather than skipped in favour of the next one. A header whose value
// lacks the source's prefix (another authentication scheme) does not count as present.
func Read(r *http.Request, sources []Source) (Found, bool) {
	for i := range sources {
		s := &sources[i]
		switch {
		case s.Header != "":
			vs := r.Header[s.Header]
			if len(vs) == 0 {
				continue
			}
			if len(vs) > 1 {
				return Found{Source: s}, true // two credentials: ambiguous, refused
			}
			v := vs[0]
			if s.Prefix != "" {
				if len(v) < len(s.Prefix) || !strings.EqualFold(v[:len(s.Prefix)], s.Prefix) {
					// Another scheme in the same header ("Basic" where "Bearer " is
					// expected) is another method's credential, not a malformed one.
					continue
				}
				v = v[len(s.Prefix):]
			}
			return Found{Value: strings.TrimSpace(v), Source: s}, true
		case s.Query != "":
			if r.URL.RawQuery == "" || !strings.Contains(r.URL.RawQuery, s.Query) {
				continue
			}
			vs, ok := r.URL.Query()[s.Query]
			if !ok {
				continue
			}
			if len(vs) != 1 {
				return Found{Source: s}, true
			}
			return Found{Value: vs[0], Source: s}, true
		default:
			if _, ok := r.Header["Cookie"]; !ok {
				continue
			}
			var found []string
			for _, c := range r.CookiesNamed(s.Cookie) {
				found = append(found, c.Value)
			}
			switch len(found) {
			case 0:
				continue
			case 1:
				return Found{Value: found[0], Source: s}, true
			}
			return Found{Source: s}, true
		}
	}
	return Found{}, false
}

// Remove deletes the credential from r so it never reaches the upstream.
func Remove(r *http.Request, s *Source) {
	switch {
	case s.Header != "":
		delete(r.Header, s.Header) // Validate made the name canonical
	case s.Query != "":
		q := r.URL.Query()
		q.Del(s.Query)
		r.URL.RawQuery = q.Encode()
	default:
		var keep []string
		for _, c := range r.Cookies() {
			if c.Name != s.Cookie {
				keep = append(keep, c.Name+"="+c.Value)
			}
		}
		if len(keep) == 0 {
			r.Header.Del("Cookie")
		} else {
			r.Header.Set("Cookie", strings.Join(keep, "; "))
		}
	}
}

// Anonymous resolves the consumer name a policy falls back to when a request carries no
// credential. An empty name means no fallback (nil, nil).
func Anonymous(cs policy.Consumers, name string) (*policy.Principal, error) {
	if name == "" {
		return nil, nil
	}
	if cs == nil {
		return nil, fmt.Errorf("anonymous: no consumer named %q", name)
	}
	c := cs.Lookup(name)
	if c == nil {
		return nil, fmt.Errorf("anonymous: no consumer named %q under top-level consumers", name)
	}
	return policy.PrincipalFor(c, policy.MethodAnonymous, ""), nil
}

// Absent is what a policy does with a request that carries none of its credentials: a principal
// an earlier policy set stands; otherwise the anonymous consumer (if any) is set, or, unless the
// policy is optional, missing is returned.
func Absent(ex *policy.Exchange, anonymous *policy.Principal, optional bool, missing error) error {
	switch {
	case ex.Principal != nil, optional && anonymous == nil:
		return nil
	case anonymous != nil:
		ex.Principal = anonymous
		return nil
	}
	return missing
}

// Sources validates a policy's from: list, def when it is empty (Validate also canonicalizes
// the header names). Each error names its index.
func Sources(from []Source, def ...Source) ([]Source, error) {
	if len(from) == 0 {
		from = def
	}
	var errs []error
	for i := range from {
		if err := from[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("from[%d]: %w", i, err))
		}
	}
	return from, errors.Join(errs...)
}

// Begin is how a credential policy starts on a request. Without an Exchange the request is
// refused with invalid; a principal an earlier policy identified stands; a request without any
// of the policy's credentials follows Absent. verify is true when found must be checked;
// otherwise err is the policy's answer: refuse with it, or pass the request on when it is nil.
func Begin(r *http.Request, sources []Source, anonymous *policy.Principal, optional bool, missing, invalid error) (ex *policy.Exchange, found Found, verify bool, err error) {
	ex = policy.ExchangeFrom(r.Context())
	switch {
	case ex == nil:
		return nil, Found{}, false, invalid
	case ex.Principal.Identified():
		return ex, Found{}, false, nil
	}
	found, ok := Read(r, sources)
	if !ok {
		return ex, Found{}, false, Absent(ex, anonymous, optional, missing)
	}
	return ex, found, true, nil
}

// BearerChallenges are the 401s of a bearer-token policy: no token, and a token refused
// (RFC 6750 §3).
func BearerChallenges(realm string) (missing, invalid *policy.Error) {
	r := "realm=" + QuoteParam(realm)
	return Challenge("token_missing", "a bearer token is required", "Bearer "+r),
		Challenge("token_invalid", "the token is not valid", "Bearer "+r+`, error="invalid_token"`)
}

// Unavailable is the 503 a policy returns while the service it depends on (an issuer's keys,
// an authorization server, an identity provider) cannot answer.
func Unavailable(detail string) *policy.Error {
	return &policy.Error{Status: http.StatusServiceUnavailable, Code: "auth_unavailable", Detail: detail,
		Header: http.Header{"Retry-After": {"5"}}}
}

// Challenge builds the 401 a policy returns: problem+json with the WWW-Authenticate challenge
// (RFC 9110 §11.6.1). The detail never says why a credential was refused.
func Challenge(code, detail, challenge string) *policy.Error {
	return &policy.Error{
		Status: http.StatusUnauthorized, Code: code, Detail: detail,
		Header: http.Header{"Www-Authenticate": {challenge}},
	}
}

// Unauthenticated is the 401 an authorization policy returns when nobody authenticated.
func Unauthenticated(challenge string) *policy.Error {
	return &policy.Error{Status: http.StatusUnauthorized, Code: "unauthenticated",
		Detail: "authentication is required", Header: http.Header{"Www-Authenticate": {challenge}}}
}

// Forbidden is the 403 an authorization policy returns for a caller who is not allowed. It is
// shared and read-only.
var Forbidden = &policy.Error{Status: http.StatusForbidden, Code: "forbidden", Detail: "the caller is not allowed to do this"}

// QuoteParam quotes an auth-param value (RFC 9110 §11.2): backslash and double quote escaped.
func QuoteParam(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// SetUpstreamHeader sets a header for the upstream and removes its name from the request's
// Connection header, so a client cannot have hop-by-hop removal delete what the gateway set.
func SetUpstreamHeader(r *http.Request, name, value string) {
	r.Header.Set(name, value)
	conn := r.Header["Connection"]
	if len(conn) == 0 {
		return
	}
	var keep []string
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !strings.EqualFold(tok, name) {
				keep = append(keep, tok)
			}
		}
	}
	if len(keep) == 0 {
		r.Header.Del("Connection")
	} else {
		r.Header["Connection"] = []string{strings.Join(keep, ", ")}
	}
}

// Claim returns the claim at a dotted path ("realm_access.roles").
func Claim(claims map[string]any, path string) (any, bool) {
	var v any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[part]; !ok {
			return nil, false
		}
	}
	return v, true
}

// Scalar renders a string, boolean or whole-number claim value; other values do not compare.
func Scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
	}
	return "", false
}

// ClaimMatches reports whether the claim at path equals one of want or, for an array claim,
// contains one of them. An empty want only requires the claim to be present.
func ClaimMatches(claims map[string]any, path string, want []string) bool {
	v, ok := Claim(claims, path)
	if !ok {
		return false
	}
	if len(want) == 0 {
		return true
	}
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if s, ok := Scalar(e); ok && slices.Contains(want, s) {
				return true
			}
		}
		return false
	}
	s, ok := Scalar(v)
	return ok && slices.Contains(want, s)
}
