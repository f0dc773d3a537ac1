package jwt

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the jwt policy: one issuer, its keys, and the checks a token
// from it must pass.
type Config struct {
	// Issuer is the exact "iss" a token must carry. Keys are bound to it: a token from another
	// issuer is refused even if some configured key would verify it. Required.
	Issuer string `json:"issuer"`
	// Audiences: the token's "aud" must contain one of them. Required: a token minted for
	// another service must not open this one.
	Audiences []string `json:"audiences"`
	// Algorithms is the allow-list of signature algorithms: RS256, RS384, RS512, PS256, PS384,
	// PS512, ES256, ES384, ES512, EdDSA. Required; "none" and HMAC are never accepted.
	Algorithms []string `json:"algorithms"`

	// JWKSURL is the issuer's JWK Set (https only). Fetched in the background, refreshed every
	// refresh_interval, refetched (rate-limited) when a token names an unknown key id; the last
	// good set is kept when the endpoint fails. One cache per URL is shared by every route.
	JWKSURL string `json:"jwks_url,omitempty"`
	// Discovery reads jwks_uri from the issuer's OpenID Connect discovery document
	// (<issuer>/.well-known/openid-configuration), whose "issuer" must equal Issuer.
	Discovery bool `json:"discovery,omitempty"`
	// Keys are local public keys: PEM files (RSA, EC or Ed25519 "PUBLIC KEY") or JWK Set JSON
	// files, relative to the config's directory.
	Keys []policy.File `json:"keys,omitempty"`
	// CA is a PEM bundle trusted for the JWKS and discovery endpoints, besides the system roots.
	CA policy.File `json:"ca,omitempty"`
	// RefreshInterval is how often the JWK Set is refetched. Default 1h.
	RefreshInterval *policy.Duration `json:"refresh_interval,omitempty"`

	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s.
	Leeway *policy.Duration `json:"leeway,omitempty"`
	// MaxTokenBytes bounds a token's size; larger ones are refused unparsed. Default 8192.
	MaxTokenBytes int `json:"max_token_bytes,omitempty"`
	// TokenTypes is the allow-list of "typ" header values (compared without case and without
	// an "application/" prefix). Default: JWT and at+jwt (RFC 9068), or no typ at all.
	TokenTypes []string `json:"token_types,omitempty"`
	// AuthorizedParties, when set, is the allow-list of "azp" values.
	AuthorizedParties []string `json:"authorized_parties,omitempty"`
	// RequiredClaims: each named claim must be present and equal one of the listed values
	// (for an array claim, contain one). An empty list only requires presence.
	RequiredClaims map[string][]string `json:"required_claims,omitempty"`
	// AcceptIDTokens accepts tokens carrying a "nonce" claim. By default they are refused: only
	// OpenID Connect ID tokens carry one, and an ID token is not an access token.
	AcceptIDTokens bool `json:"accept_id_tokens,omitempty"`

	// CacheSize enables a bounded cache of verified tokens (keyed by the token's SHA-256), so a
	// client that sends the same token on every request pays the signature check once. An entry
	// lives until the token's exp or cache_ttl, whichever comes first. 0 (default) is off.
	CacheSize int `json:"cache_size,omitempty"`
	// CacheTTL bounds how long a verified token is remembered. Default 5m.
	CacheTTL *policy.Duration `json:"cache_ttl,omitempty"`

	// From lists where the token is read, in order. Default: Authorization: Bearer.
	From []authn.Source `json:"from,omitempty"`
	// KeepToken sends the token upstream too. By default it is removed.
	KeepToken bool `json:"keep_token,omitempty"`
	// ConsumerClaim names the claim whose value is a consumer's name. When a consumer matches,
	// the caller is that consumer (its groups and plan apply); otherwise the token's subject.
	ConsumerClaim string `json:"consumer_claim,omitempty"`
	// RequireConsumer refuses a valid token whose consumer claim names no configured consumer.
	RequireConsumer bool `json:"require_consumer,omitempty"`
	// ForwardClaims sends claims upstream as headers: header name -> claim (dots for nested
	// claims). Clients' own copies of these headers are always removed.
	ForwardClaims map[string]string `json:"forward_claims,omitempty"`

	// Optional lets a request without a token through unauthenticated, for a later
	// authentication policy or a require policy to decide. A bad token is always 401.
	Optional bool `json:"optional,omitempty"`
	// Anonymous names the consumer a request without a token is served as.
	Anonymous string `json:"anonymous,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default "limen".
	Realm string `json:"realm,omitempty"`
}

var knownAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Validate checks required fields, the algorithm allow-list and the key source, and fills
// defaults.
func (c *Config) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Issuer == "" {
		fail("issuer is required: keys are bound to their issuer")
	}
	if len(c.Audiences) == 0 {
		fail("audiences is required: a token minted for another service must not open this one")
	}
	if len(c.Algorithms) == 0 {
		fail("algorithms is required, e.g. [RS256]")
	}
	for i, a := range c.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			fail("algorithms[%d]: \"none\" is never accepted", i)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			fail("algorithms[%d]: %s: HMAC algorithms are not accepted (a shared secret is not an issuer's key, and HMAC beside public keys invites key confusion)", i, a)
		case !slices.Contains(knownAlgorithms, a):
			fail("algorithms[%d]: unknown algorithm %q (want one of %s)", i, a, strings.Join(knownAlgorithms, ", "))
		}
	}
	sources := 0
	if c.JWKSURL != "" {
		sources++
		if err := httpsURL(c.JWKSURL); err != nil {
			fail("jwks_url: %v", err)
		}
	}
	if c.Discovery {
		sources++
		if err := httpsURL(c.Issuer); err != nil {
			fail("discovery: the issuer must be an https URL: %v", err)
		}
	}
	if len(c.Keys) > 0 {
		sources++
	}
	if sources != 1 {
		fail("set exactly one key source: jwks_url, discovery or keys")
	}
	if c.RefreshInterval == nil {
		d := policy.Duration(time.Hour)
		c.RefreshInterval = &d
	} else if c.RefreshInterval.D() < time.Minute {
		fail("refresh_interval below 1m would hammer the issuer")
	}
	if c.Leeway == nil {
		d := policy.Duration(30 * time.Second)
		c.Leeway = &d
	} else if c.Leeway.D() > 5*time.Minute {
		fail("leeway above 5m accepts tokens long expired")
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = 8192
	}
	if c.MaxTokenBytes < 256 || c.MaxTokenBytes > 1<<20 {
		fail("max_token_bytes must be between 256 and 1048576")
	}
	if c.CacheSize < 0 || c.CacheSize > 1_000_000 {
		fail("cache_size must be between 0 and 1000000")
	}
	if c.CacheTTL == nil {
		d := policy.Duration(5 * time.Minute)
		c.CacheTTL = &d
	}
	if len(c.TokenTypes) == 0 {
		c.TokenTypes = []string{"JWT", "at+jwt"}
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

// httpsURL requires an absolute https URL: keys fetched in clear text could be swapped by anyone
// on the path.
func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want an https:// URL", s)
	}
	return nil
}
