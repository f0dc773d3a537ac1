package introspection

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the oauth2_introspection policy: one authorization server's
// introspection endpoint (RFC 7662), the client credentials the gateway presents to it, and the
// checks an active token must pass.
type Config struct {
	// URL is the introspection endpoint (https only). Required. Credentials belong in client_id
	// and client_secret_env, not in the URL.
	URL string `json:"url"`
	// ClientID is the gateway's client id at the authorization server, sent with the secret as
	// HTTP Basic client authentication (RFC 7662 §2.1, RFC 6749 §2.3.1). Required.
	ClientID string `json:"client_id"`
	// ClientSecretEnv names the environment variable that holds the client secret (not the
	// secret itself, and not "${...}": policy configs are not expanded). It is read when the
	// config is loaded; an unset or empty variable is an error. Required.
	ClientSecretEnv string `json:"client_secret_env"`
	// TokenTypeHint is sent as token_type_hint (RFC 7662 §2.1). Default "access_token".
	TokenTypeHint string `json:"token_type_hint,omitempty"`
	// CA is a PEM bundle trusted for the endpoint besides the system roots, relative to the
	// config's directory.
	CA policy.File `json:"ca,omitempty"`
	// Timeout bounds one introspection call, connection included. Default 5s.
	Timeout *policy.Duration `json:"timeout,omitempty"`

	// CacheTTL is the longest an active result is remembered; a result is never kept past the
	// token's "exp", and one whose exp has passed is not kept at all. Revoking a token takes
	// effect at the gateway within this time. "0s" turns the cache off. Default 5m.
	CacheTTL *policy.Duration `json:"cache_ttl,omitempty"`
	// NegativeCacheTTL is how long an inactive result is remembered, so a client retrying a
	// dead token does not cost a call each time. "0s" turns it off. Default 10s.
	NegativeCacheTTL *policy.Duration `json:"negative_cache_ttl,omitempty"`
	// CacheSize bounds the number of remembered results. Default 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// Audiences, when set, is the allow-list of audiences: the response's "aud" (a string or a
	// list) must contain one of them.
	Audiences []string `json:"audiences,omitempty"`
	// Issuer, when set, is the exact "iss" the response must carry.
	Issuer string `json:"issuer,omitempty"`

	// From lists where the token is read, in order. Default: Authorization: Bearer.
	From []authn.Source `json:"from,omitempty"`
	// KeepToken sends the token upstream too. By default it is removed.
	KeepToken bool `json:"keep_token,omitempty"`
	// ConsumerClaim names the response member whose value is a consumer's name. When a consumer
	// matches, the caller is that consumer (its groups and plan apply); otherwise the token's
	// subject.
	ConsumerClaim string `json:"consumer_claim,omitempty"`
	// RequireConsumer refuses an active token whose consumer claim names no configured consumer.
	RequireConsumer bool `json:"require_consumer,omitempty"`
	// ForwardClaims sends response members upstream as headers: header name -> member (dots for
	// nested members). Clients' own copies of these headers are always removed.
	ForwardClaims map[string]string `json:"forward_claims,omitempty"`

	// Optional lets a request without a token through unauthenticated, for a later
	// authentication policy or a require policy to decide. A bad token is always 401.
	Optional bool `json:"optional,omitempty"`
	// Anonymous names the consumer a request without a token is served as.
	Anonymous string `json:"anonymous,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default "limen".
	Realm string `json:"realm,omitempty"`
}

// Validate checks required fields and ranges and fills defaults. The client secret itself is
// read when the policy is built, so validating a config needs no secrets in the environment.
func (c *Config) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.URL == "" {
		fail("url is required: the authorization server's introspection endpoint")
	} else if err := httpsURL(c.URL); err != nil {
		fail("url: %v", err)
	}
	if c.ClientID == "" {
		fail("client_id is required: introspection endpoints authenticate their callers (RFC 7662 §2.1)")
	}
	switch {
	case c.ClientSecretEnv == "":
		fail("client_secret_env is required: the name of the environment variable holding the client secret")
	case strings.Contains(c.ClientSecretEnv, "$") || strings.ContainsAny(c.ClientSecretEnv, "={} \t\r\n"):
		fail("client_secret_env: %q: give the variable's name (e.g. INTROSPECTION_SECRET), not ${...} or a value", c.ClientSecretEnv)
	}
	if c.TokenTypeHint == "" {
		c.TokenTypeHint = "access_token"
	}
	if c.Timeout == nil {
		d := policy.Duration(5 * time.Second)
		c.Timeout = &d
	} else if c.Timeout.D() <= 0 || c.Timeout.D() > time.Minute {
		fail("timeout must be above 0s and at most 1m: every request waiting on the server waits this long")
	}
	if c.CacheTTL == nil {
		d := policy.Duration(5 * time.Minute)
		c.CacheTTL = &d
	}
	if c.NegativeCacheTTL == nil {
		d := policy.Duration(10 * time.Second)
		c.NegativeCacheTTL = &d
	}
	if c.CacheSize == 0 {
		c.CacheSize = 10000
	}
	if c.CacheSize < 0 {
		fail("cache_size must not be negative")
	}
	for i, a := range c.Audiences {
		if a == "" {
			fail("audiences[%d] is empty", i)
		}
	}
	if c.RequireConsumer && c.ConsumerClaim == "" {
		fail("require_consumer needs consumer_claim")
	}
	if err := authn.ValidateClaimHeaders(c.ForwardClaims); err != nil {
		errs = append(errs, err)
	}
	from, err := authn.Sources(c.From, authn.Source{Header: "Authorization", Prefix: "Bearer "})
	if err != nil {
		errs = append(errs, err)
	}
	c.From = from
	if c.Optional && c.Anonymous != "" {
		fail("optional and anonymous exclude each other")
	}
	if c.Realm == "" {
		c.Realm = "limen"
	}
	return errors.Join(errs...)
}

// httpsURL requires an absolute https URL without credentials in it: tokens and the client
// secret sent in clear text could be read by anyone on the path.
func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want an https:// URL", s)
	}
	if u.User != nil {
		return errors.New("credentials in the URL: use client_id and client_secret_env")
	}
	return nil
}
