package require

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Config is the configuration of the require policy: conditions on the authenticated
// caller. Every listed condition must hold (all-of); the *_any lists need one member each.
type Config struct {
	// Methods limits the rule to these request methods; requests with other methods pass.
	// Default: every method. Use several require policies for per-method rules.
	Methods []string `json:"methods,omitempty"`
	// Scopes the caller's token must all grant ("scope" or "scp" claim).
	Scopes []string `json:"scopes,omitempty"`
	// ScopesAny: the token must grant at least one of these.
	ScopesAny []string `json:"scopes_any,omitempty"`
	// Groups the consumer must all belong to.
	Groups []string `json:"groups,omitempty"`
	// GroupsAny: the consumer must belong to at least one of these.
	GroupsAny []string `json:"groups_any,omitempty"`
	// Claims: each named claim must equal one of the listed values (for an array claim, contain
	// one). Nested claims use dots: "realm_access.roles".
	Claims map[string][]string `json:"claims,omitempty"`
	// AllowAnonymous accepts a caller let in as an anonymous consumer. Default false: an
	// anonymous caller gets 401, as if it had not authenticated.
	AllowAnonymous bool `json:"allow_anonymous,omitempty"`
	// Challenge is the WWW-Authenticate value sent with 401 when nobody authenticated.
	// Default `Bearer realm="limen"`.
	Challenge string `json:"challenge,omitempty"`
}

// Validate fills defaults and checks method names.
func (c *Config) Validate() error {
	for i, m := range c.Methods {
		if m == "" || strings.ToUpper(m) != m {
			return fmt.Errorf("methods[%d]: %q: methods are uppercase tokens such as GET", i, m)
		}
	}
	for k, vs := range c.Claims {
		if k == "" || len(vs) == 0 {
			return fmt.Errorf("claims: %q needs at least one value", k)
		}
	}
	if c.Challenge == "" {
		c.Challenge = `Bearer realm="limen"`
	}
	if strings.ContainsAny(c.Challenge, "\r\n") {
		return errors.New("challenge: line breaks are not allowed")
	}
	return nil
}

func (c *Config) appliesTo(method string) bool {
	if len(c.Methods) == 0 {
		return true
	}
	for _, m := range c.Methods {
		if m == method || m == http.MethodGet && method == http.MethodHead {
			return true
		}
	}
	return false
}
