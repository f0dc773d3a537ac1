// Package require provides the require policy (phase Authz): conditions on the authenticated
// caller's scopes, groups and token claims, per route and optionally per method.
//
// It reads the principal an authentication policy stored in the request's Exchange. A request
// nobody authenticated gets 401; an authenticated caller who is not allowed gets 403.
package require

import (
	"net/http"
	"slices"
	"strings"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "require"

var phases = policy.PhaseRange{Default: policy.Authz, Min: policy.Authz, Max: policy.Limit}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*require)(nil)

type require struct {
	cfg          Config
	unauth       *policy.Error
	scopeMissing *policy.Error
}

func build(_ policy.BuildContext, c *Config) (policy.Policy, error) {
	r := &require{cfg: *c, unauth: authn.Unauthenticated(c.Challenge)}
	// RFC 6750 §3.1: a token without the scope gets 403 insufficient_scope, naming what is needed.
	need := strings.Join(append(append([]string{}, c.Scopes...), c.ScopesAny...), " ")
	r.scopeMissing = &policy.Error{Status: http.StatusForbidden, Code: "insufficient_scope",
		Detail: "the token does not grant the scope this requires",
		Header: http.Header{"Www-Authenticate": {`Bearer error="insufficient_scope", scope="` + strings.ReplaceAll(need, `"`, "") + `"`}}}
	return r, nil
}

func (q *require) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if !q.cfg.appliesTo(r.Method) {
			return next.ServeHTTP(w, r)
		}
		p := policy.PrincipalFrom(r.Context())
		if p == nil || p.Method == policy.MethodAnonymous && !q.cfg.AllowAnonymous {
			return q.unauth
		}
		if err := q.check(p); err != nil {
			return err
		}
		return next.ServeHTTP(w, r)
	})
}

func (q *require) check(p *policy.Principal) *policy.Error {
	c := &q.cfg
	if !containsAll(p.Scopes, c.Scopes) || len(c.ScopesAny) > 0 && !containsAny(p.Scopes, c.ScopesAny) {
		return q.scopeMissing
	}
	if !containsAll(p.Groups, c.Groups) || len(c.GroupsAny) > 0 && !containsAny(p.Groups, c.GroupsAny) {
		return authn.Forbidden
	}
	for name, want := range c.Claims {
		if !authn.ClaimMatches(p.Claims, name, want) {
			return authn.Forbidden
		}
	}
	return nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func containsAny(have, want []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}
