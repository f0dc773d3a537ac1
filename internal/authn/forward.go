package authn

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/limen-gateway/limen/internal/httpx"
)

// ClaimString renders a scalar claim (or a list of scalars, comma-separated) for a header.
func ClaimString(claims map[string]any, path string) (string, bool) {
	v, ok := Claim(claims, path)
	if !ok {
		return "", false
	}
	if list, ok := v.([]any); ok {
		parts := make([]string, 0, len(list))
		for _, e := range list {
			if s, ok := Scalar(e); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ","), len(parts) > 0
	}
	return Scalar(v)
}

// ClaimHeaders is a policy's forward_claims: claims sent upstream as headers, in header order
// so the upstream sees the same request whatever the map's iteration order.
type ClaimHeaders []claimHeader

type claimHeader struct{ header, claim string }

// ValidateClaimHeaders checks a forward_claims map: header name -> claim (dots for nested claims).
func ValidateClaimHeaders(m map[string]string) error {
	var errs []error
	for h, claim := range m {
		if claim == "" || !httpx.ValidToken(h) {
			errs = append(errs, fmt.Errorf("forward_claims: %q: want a header name and a claim", h))
		}
	}
	return errors.Join(errs...)
}

// NewClaimHeaders compiles a validated forward_claims map.
func NewClaimHeaders(m map[string]string) ClaimHeaders {
	out := make(ClaimHeaders, 0, len(m))
	for h, claim := range m {
		out = append(out, claimHeader{header: http.CanonicalHeaderKey(h), claim: claim})
	}
	slices.SortFunc(out, func(a, b claimHeader) int { return strings.Compare(a.header, b.header) })
	return out
}

// Strip removes a client's copies of the headers: they are the gateway's to set, so they go
// whatever happens next.
func (c ClaimHeaders) Strip(h http.Header) {
	for _, f := range c {
		h.Del(f.header)
	}
}

// Set sends each claim present in claims upstream.
func (c ClaimHeaders) Set(r *http.Request, claims map[string]any) {
	for _, f := range c {
		if s, ok := ClaimString(claims, f.claim); ok {
			SetUpstreamHeader(r, f.header, s)
		}
	}
}
