// Package acl provides the acl policy (phase Authz): which consumers, by name or group, may use
// a route. It reads the principal an authentication policy stored; nobody authenticated is 401,
// a caller who is not allowed 403.
package acl

import (
	"net/http"
	"strings"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "acl"

var phases = policy.PhaseRange{Default: policy.Authz, Min: policy.Authz, Max: policy.Limit}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*acl)(nil)

type acl struct {
	allowNames, allowGroups map[string]bool
	denyNames, denyGroups   map[string]bool
	unauth                  *policy.Error
}

func build(_ policy.BuildContext, c *Config) (policy.Policy, error) {
	a := &acl{allowNames: map[string]bool{}, allowGroups: map[string]bool{}, denyNames: map[string]bool{}, denyGroups: map[string]bool{},
		unauth: authn.Unauthenticated(`Bearer realm="limen"`)}
	split := func(list []string, names, groups map[string]bool) {
		for _, e := range list {
			if g, ok := strings.CutPrefix(e, "group:"); ok {
				groups[g] = true
			} else {
				names[e] = true
			}
		}
	}
	split(c.Allow, a.allowNames, a.allowGroups)
	split(c.Deny, a.denyNames, a.denyGroups)
	return a, nil
}

func (a *acl) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		p := policy.PrincipalFrom(r.Context())
		if p == nil {
			return a.unauth
		}
		if !a.allowed(p) {
			return authn.Forbidden
		}
		return next.ServeHTTP(w, r)
	})
}

func (a *acl) allowed(p *policy.Principal) bool {
	if a.denyNames[p.ID] || anyIn(p.Groups, a.denyGroups) {
		return false
	}
	if len(a.allowNames) == 0 && len(a.allowGroups) == 0 {
		return true
	}
	return a.allowNames[p.ID] || anyIn(p.Groups, a.allowGroups)
}

func anyIn(groups []string, set map[string]bool) bool {
	for _, g := range groups {
		if set[g] {
			return true
		}
	}
	return false
}
