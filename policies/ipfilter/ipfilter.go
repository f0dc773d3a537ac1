// Package ipfilter provides the ip_filter policy: allow and deny lists of client addresses and
// CIDR ranges, matched against the client IP the server trusted.
//
// The address comes from policy.ClientIPFrom, which the server computed from the listener's
// configured source past its trusted proxies; this policy never reads RemoteAddr or a header,
// since either may be a proxy's address or a client's lie.
package ipfilter

import (
	"net/http"
	"net/netip"

	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "ip_filter"

// phases: Edge by default, so floods are refused before anything costly runs; up to Authz for
// rules that belong beside authorization.
var phases = policy.PhaseRange{Default: policy.Edge, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, func(_ policy.BuildContext, c *Config) (policy.Policy, error) {
		allow, deny, err := c.compile()
		if err != nil {
			return nil, err
		}
		return &filter{allow: allow, deny: deny}, nil
	})
}

var _ policy.Policy = (*filter)(nil)

// filter is a provisioned ip_filter.
type filter struct {
	allow, deny *set
}

// errDenied is the shared, read-only refusal. Its detail does not echo the address.
var errDenied = &policy.Error{Status: http.StatusForbidden, Code: "ip_denied", Detail: "the client address is not allowed"}

// Wrap returns the handler that refuses denied addresses with 403 ip_denied.
func (f *filter) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if !f.allowed(policy.ClientIPFrom(r.Context())) {
			return errDenied
		}
		return next.ServeHTTP(w, r)
	})
}

// allowed applies the rules: deny wins; a non-empty allow list admits only its members. An
// unknown client address is denied: a filter that cannot tell must fail closed.
func (f *filter) allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	if f.deny.contains(a) {
		return false
	}
	return f.allow.empty() || f.allow.contains(a)
}
