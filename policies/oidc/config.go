package oidc

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

// Config is the configuration of the oidc policy: the OpenID Connect provider, the gateway's
// client registration at it, and the session cookie that remembers a login.
type Config struct {
	// Issuer is the provider's issuer URL (https only). Its discovery document
	// (<issuer>/.well-known/openid-configuration) must name exactly this issuer, and ID tokens
	// must carry it as "iss". Required.
	Issuer string `json:"issuer"`
	// ClientID is the gateway's client id at the provider; ID tokens must name it in "aud".
	// Required.
	ClientID string `json:"client_id"`
	// ClientSecretEnv names the environment variable that holds the client secret (not the
	// secret itself, and not "${...}": policy configs are not expanded). It is read when the
	// policy is built; an unset or empty variable is an error. The secret is sent to the token
	// endpoint as HTTP Basic client authentication (client_secret_basic). Required.
	ClientSecretEnv string `json:"client_secret_env"`
	// RedirectURL is the absolute https URL registered at the provider as this client's
	// redirect URI. Its path is the callback the policy answers itself, so the route must match
	// it; its host must be the host the application is served on (or be covered by
	// cookie_domain), since the login's cookies must reach it. It is taken from configuration
	// only, never derived from request headers. Required.
	RedirectURL string `json:"redirect_url"`
	// Scopes are requested at login. They must include "openid". Default [openid, profile,
	// email].
	Scopes []string `json:"scopes,omitempty"`
	// CookieName is the name of the session cookie; the login-in-progress cookie is this name
	// with "_flow" appended. Default "limen_session".
	CookieName string `json:"cookie_name,omitempty"`
	// CookieDomain is the session cookie's Domain attribute, to share a login between hosts
	// under one domain. By default the cookie is sent back to the exact host that set it.
	CookieDomain string `json:"cookie_domain,omitempty"`
	// SessionTTL is the longest a login lasts, between 1m and 720h. Without a refresh token a
	// session also ends when the ID token expires. Default 8h.
	SessionTTL *policy.Duration `json:"session_ttl,omitempty"`
	// SessionKeyEnv names the environment variable that holds the 32-byte key (64 hex digits or
	// base64) that encrypts and authenticates the cookies (AES-256-GCM). Every gateway node must
	// share it; changing it logs everybody out. It is read when the policy is built. Required.
	SessionKeyEnv string `json:"session_key_env"`
	// PostLogoutRedirectURL is where the browser goes after logging out: sent to the provider's
	// end_session_endpoint as post_logout_redirect_uri when it has one (it must then be
	// registered there), or redirected to directly when it has none. Absolute https URL.
	// Default: the provider's own page, or "/".
	PostLogoutRedirectURL string `json:"post_logout_redirect_url,omitempty"`
	// LogoutPath is the path on the route that ends the session. Default "/oauth2/logout".
	LogoutPath string `json:"logout_path,omitempty"`
	// CA is a PEM bundle trusted for the provider's endpoints (discovery, keys, token) besides
	// the system roots, relative to the config's directory.
	CA policy.File `json:"ca,omitempty"`
	// ConsumerClaim names the ID token claim whose value is a consumer's name. When a consumer
	// matches, the caller is that consumer (its groups and plan apply); otherwise the subject.
	ConsumerClaim string `json:"consumer_claim,omitempty"`
	// ForwardClaims sends ID token claims upstream as headers: header name -> claim (dots for
	// nested claims). Clients' own copies of these headers are always removed.
	ForwardClaims map[string]string `json:"forward_claims,omitempty"`
	// APIMode answers 401 instead of redirecting to the provider when a request has no session,
	// for routes that serve an API to a single-page application rather than pages. Requests
	// that are not page navigations (non-GET methods, an Accept header without text/html,
	// X-Requested-With, Sec-Fetch-Mode other than navigate) get 401 in any case.
	APIMode bool `json:"api_mode,omitempty"`
}

// Validate checks required fields and URLs and fills defaults. The client secret and the
// session key are read when the policy is built, so validating a config needs no secrets in the
// environment.
func (c *Config) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Issuer == "" {
		fail("issuer is required: the OpenID Connect provider's issuer URL")
	} else if _, err := httpsURL(c.Issuer); err != nil {
		fail("issuer: %v", err)
	}
	if c.ClientID == "" {
		fail("client_id is required: the gateway's client id at the provider")
	}
	checkEnvName := func(key, value, example string) {
		switch {
		case value == "":
			fail("%s is required: the name of the environment variable holding it", key)
		case strings.Contains(value, "$") || strings.ContainsAny(value, "={} \t\r\n"):
			fail("%s: %q: give the variable's name (e.g. %s), not ${...} or a value", key, value, example)
		}
	}
	checkEnvName("client_secret_env", c.ClientSecretEnv, "OIDC_CLIENT_SECRET")
	checkEnvName("session_key_env", c.SessionKeyEnv, "OIDC_SESSION_KEY")
	if c.RedirectURL == "" {
		fail("redirect_url is required: the https URL registered at the provider, whose path this policy answers as the callback")
	} else if u, err := httpsURL(c.RedirectURL); err != nil {
		fail("redirect_url: %v", err)
	} else {
		if u.RawQuery != "" || u.Fragment != "" {
			fail("redirect_url: %q: want no query or fragment", c.RedirectURL)
		}
		if u.Path == "" || u.Path == "/" {
			fail("redirect_url: %q: want a path of its own for the callback, e.g. /oauth2/callback", c.RedirectURL)
		}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "profile", "email"}
	} else if !slices.Contains(c.Scopes, "openid") {
		fail("scopes must contain openid: without it the provider returns no ID token")
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			fail("scopes[%d]: %q is not a scope token", i, s)
		}
	}
	if c.CookieName == "" {
		c.CookieName = "limen_session"
	} else if !cookieToken(c.CookieName) {
		fail("cookie_name: %q: use letters, digits, '-', '_' and '.'", c.CookieName)
	}
	if c.CookieDomain != "" && (!cookieToken(c.CookieDomain) || strings.HasPrefix(c.CookieDomain, ".")) {
		fail("cookie_domain: %q: want a host name such as example.com", c.CookieDomain)
	}
	if c.SessionTTL == nil {
		d := policy.Duration(8 * time.Hour)
		c.SessionTTL = &d
	} else if c.SessionTTL.D() < time.Minute || c.SessionTTL.D() > 720*time.Hour {
		fail("session_ttl must be between 1m and 720h")
	}
	if c.PostLogoutRedirectURL != "" {
		if _, err := httpsURL(c.PostLogoutRedirectURL); err != nil {
			fail("post_logout_redirect_url: %v", err)
		}
	}
	if c.LogoutPath == "" {
		c.LogoutPath = "/oauth2/logout"
	} else if !strings.HasPrefix(c.LogoutPath, "/") || strings.HasPrefix(c.LogoutPath, "//") || strings.ContainsAny(c.LogoutPath, "?# \\") {
		fail("logout_path: %q: want a path such as /oauth2/logout", c.LogoutPath)
	}
	if u, err := url.Parse(c.RedirectURL); err == nil && c.RedirectURL != "" && u.Path == c.LogoutPath {
		fail("logout_path must differ from redirect_url's path")
	}
	if err := authn.ValidateClaimHeaders(c.ForwardClaims); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// httpsURL requires an absolute https URL without credentials in it: codes, tokens and the
// client secret sent in clear text could be read by anyone on the path.
func httpsURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q: want an https:// URL", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q: credentials do not belong in the URL", s)
	}
	return u, nil
}

// cookieToken reports whether s is safe as a cookie name or domain: a conservative subset of
// RFC 6265 §4.1.1 tokens.
func cookieToken(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return s != ""
}
