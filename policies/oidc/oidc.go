// Package oidc provides the oidc policy: the OpenID Connect authorization code flow for web
// applications behind the gateway (OpenID Connect Core 1.0 §3.1), with go-oidc verifying ID
// tokens and x/oauth2 talking to the token endpoint.
//
// A browser without a session is redirected to the provider with PKCE (RFC 7636, S256), a
// random state and a nonce, kept in a short-lived encrypted cookie; the callback checks the
// state, exchanges the code, verifies the ID token (signature from the provider's keys, issuer,
// audience, expiry, nonce) and sets the session cookie. The session lives in the cookie itself,
// encrypted and authenticated with AES-256-GCM: there is no server-side store, so every node
// with the key serves it. The provider is discovered on first use, never while a config is
// built, and shared through the Pool by every route that names the same issuer.
package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "oidc"

// exchangeTimeout bounds a call to the token endpoint (code exchange or refresh).
const exchangeTimeout = 15 * time.Second

var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*login)(nil)

type login struct {
	cfg          Config
	secret       string
	seal         *sealer
	disc         *discovery
	release      func()
	consumers    policy.Consumers
	forward      authn.ClaimHeaders
	keep         []string // claim paths the policy itself reads
	callbackPath string
	flowCookie   string
	log          *slog.Logger
	refreshes    singleflight.Group

	required, failed, unavailable *policy.Error
}

// tokenClaims describe the ID token rather than the user; they are not kept in the session.
var tokenClaims = []string{"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "auth_time", "jti", "azp", "sid", "acr", "amr", "sub"}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	secret := os.Getenv(c.ClientSecretEnv)
	if secret == "" {
		return nil, fmt.Errorf("client_secret_env: the environment variable %s is unset or empty; set it to the client secret", c.ClientSecretEnv)
	}
	rawKey := os.Getenv(c.SessionKeyEnv)
	if rawKey == "" {
		return nil, fmt.Errorf("session_key_env: the environment variable %s is unset or empty; set it to 32 random bytes (openssl rand -hex 32)", c.SessionKeyEnv)
	}
	key, err := parseKey(rawKey)
	if err != nil {
		return nil, fmt.Errorf("session_key_env: %s: %w", c.SessionKeyEnv, err)
	}
	seal, err := newSealer(key, c.Issuer, c.ClientID, c.CookieName)
	if err != nil {
		return nil, err
	}
	var caPEM []byte
	if c.CA != "" {
		if caPEM, err = os.ReadFile(c.CA.Path(bc.BaseDir)); err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
	}
	log := bc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	redirect, _ := url.Parse(c.RedirectURL) // checked by Validate
	l := &login{
		cfg:          *c,
		secret:       secret,
		seal:         seal,
		consumers:    bc.Consumers,
		callbackPath: redirect.Path,
		flowCookie:   c.CookieName + "_flow",
		log:          log,
	}
	l.forward = authn.NewClaimHeaders(c.ForwardClaims)
	for _, claim := range c.ForwardClaims {
		l.keep = append(l.keep, claim)
	}
	if c.ConsumerClaim != "" {
		l.keep = append(l.keep, c.ConsumerClaim)
	}

	// The discovered provider is keyed by what it is: the issuer and whom the gateway trusts to
	// be it. A reload that keeps those keeps the provider and its key cache.
	obj, release, err := bc.Acquire(Kind+"|"+c.Issuer+"|"+outbound.CAKey(caPEM), func() (any, error) { return newDiscovery(c.Issuer, caPEM, log) })
	if err != nil {
		return nil, err
	}
	l.disc, l.release = obj.(*discovery), release

	challenge := `Cookie realm="limen", cookie-name=` + authn.QuoteParam(c.CookieName)
	l.required = authn.Challenge("session_required", "a login session is required", challenge)
	l.failed = authn.Challenge("login_failed", "the login did not complete; start again", challenge)
	l.unavailable = authn.Unavailable("the identity provider is not available; retry later")
	return l, nil
}

// Close releases the shared provider.
func (l *login) Close() error {
	l.release()
	return nil
}

// Wrap answers the callback and logout paths itself and otherwise requires a session: a request
// with one goes on as its user, a browser without one is sent to the provider to log in.
func (l *login) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		switch r.URL.Path {
		case l.callbackPath:
			return l.callback(w, r)
		case l.cfg.LogoutPath:
			return l.logout(w, r)
		}
		l.forward.Strip(r.Header)
		ex := policy.ExchangeFrom(r.Context())
		if ex == nil {
			return l.required
		}
		if ex.Principal.Identified() {
			l.strip(r)
			return next.ServeHTTP(w, r)
		}
		ss, present := l.readSession(r)
		now := time.Now()
		if ss != nil && !ss.expired(now) && ss.stale(now) {
			fresh, err := l.refresh(r.Context(), ss)
			switch {
			case errors.Is(err, errUnavailable):
				return l.refuse(l.unavailable, err)
			case err != nil:
				l.log.Debug("oidc refresh failed; starting a new login", "err", err)
				ss = nil
			default:
				ss = fresh
				if err := l.setSession(w, ss); err != nil {
					return err
				}
			}
		}
		if ss == nil || ss.expired(now) {
			if present {
				l.clearCookie(w, l.cfg.CookieName, "/")
			}
			return l.startLogin(w, r)
		}
		ex.Principal = l.principal(ss)
		l.strip(r)
		l.forward.Set(r, ss.Claims)
		return next.ServeHTTP(w, r)
	})
}

// refuse returns a copy of e carrying the cause, for the log.
func (l *login) refuse(e *policy.Error, cause error) error {
	return &policy.Error{Status: e.Status, Code: e.Code, Detail: e.Detail, Header: e.Header, Err: cause}
}

// navigation reports whether r is a browser loading a page, which can follow a redirect to
// the provider and back. Anything else (scripts, API clients, forms) gets a 401 it can act on:
// a redirect would only hand it the provider's login page.
func (l *login) navigation(r *http.Request) bool {
	if l.cfg.APIMode || r.Method != http.MethodGet {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	if accept := r.Header.Values("Accept"); len(accept) > 0 {
		for _, a := range accept {
			if strings.Contains(strings.ToLower(a), "text/html") {
				return true
			}
		}
		return false
	}
	return true
}

// startLogin sends a browser to the provider's authorization endpoint, remembering the flow.
func (l *login) startLogin(w http.ResponseWriter, r *http.Request) error {
	if !l.navigation(r) {
		return l.required
	}
	p, err := l.disc.get(r.Context())
	if err != nil {
		return l.refuse(l.unavailable, err)
	}
	target := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	f := flow{
		State:    randomString(),
		Nonce:    randomString(),
		Verifier: oauth2.GenerateVerifier(),
		URL:      localURL(target),
		Exp:      time.Now().Add(flowTTL).Unix(),
	}
	v, err := l.seal.seal(l.seal.flowAD, &f)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: l.flowCookie, Value: v, Path: l.callbackPath, Domain: l.cfg.CookieDomain,
		MaxAge: int(flowTTL / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
	authURL := l.oauth2(p).AuthCodeURL(f.State, gooidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return redirect(w, authURL, http.StatusFound)
}

// callback completes a login: the provider sent the browser back with a code.
func (l *login) callback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return &policy.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Detail: "the login callback takes GET", Header: http.Header{"Allow": {"GET"}}}
	}
	// The flow is used once, whatever happens: a failed callback must not be replayable, and a
	// new attempt starts from the application, never from here (no redirect loops).
	l.clearCookie(w, l.flowCookie, l.callbackPath)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return l.refuse(l.failed, fmt.Errorf("the provider answered error=%.64q", e))
	}
	var f flow
	c, err := r.Cookie(l.flowCookie)
	if err != nil {
		return l.refuse(l.failed, errors.New("no login in progress: the flow cookie is missing"))
	}
	if err := l.seal.open(l.seal.flowAD, c.Value, &f); err != nil {
		return l.refuse(l.failed, fmt.Errorf("flow cookie: %w", err))
	}
	if time.Now().Unix() >= f.Exp {
		return l.refuse(l.failed, errors.New("the login took longer than 10 minutes"))
	}
	state := q.Get("state")
	if state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(f.State)) != 1 {
		return l.refuse(l.failed, errors.New("state does not match the login in progress"))
	}
	// RFC 9207: a provider that names itself must be ours (mix-up attacks).
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != l.cfg.Issuer) {
		return l.refuse(l.failed, fmt.Errorf("the response names issuer %.64q", iss))
	}
	code := q.Get("code")
	if code == "" {
		return l.refuse(l.failed, errors.New("no code in the callback"))
	}
	p, err := l.disc.get(r.Context())
	if err != nil {
		return l.refuse(l.unavailable, err)
	}
	ctx, cancel := context.WithTimeout(gooidc.ClientContext(r.Context(), l.disc.client), exchangeTimeout)
	defer cancel()
	tok, err := l.oauth2(p).Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return l.refuse(l.failed, fmt.Errorf("code exchange: %w", err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return l.refuse(l.failed, errors.New("the token response has no id_token"))
	}
	idt, err := p.Verifier(&gooidc.Config{ClientID: l.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return l.refuse(l.failed, fmt.Errorf("id token: %w", err))
	}
	if idt.Subject == "" {
		return l.refuse(l.failed, errors.New("id token: no subject"))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return l.refuse(l.failed, errors.New("id token: nonce does not match the login in progress"))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return l.refuse(l.failed, fmt.Errorf("id token: %w", err))
		}
	}
	claims, err := userClaims(idt)
	if err != nil {
		return l.refuse(l.failed, err)
	}
	now := time.Now()
	ss := &session{
		Sub:     idt.Subject,
		Claims:  claims,
		IDToken: raw,
		Fresh:   idt.Expiry.Unix(),
		Refresh: tok.RefreshToken,
		End:     now.Add(l.cfg.SessionTTL.D()).Unix(),
	}
	if !tok.Expiry.IsZero() {
		ss.AccessExp = tok.Expiry.Unix()
	}
	if ss.expired(now) {
		return l.refuse(l.failed, errors.New("the session would be over at once"))
	}
	if err := l.setSession(w, ss); err != nil {
		return err
	}
	return redirect(w, localURL(f.URL), http.StatusFound)
}

// refresh renews a stale session with its refresh token. Concurrent requests carrying the same
// session share one call, so a provider that rotates refresh tokens does not see the old one
// used twice.
func (l *login) refresh(ctx context.Context, ss *session) (*session, error) {
	p, err := l.disc.get(ctx)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(ss.Refresh))
	ch := l.refreshes.DoChan(string(key[:]), func() (any, error) {
		// The call is detached from the request that started it: the others share it.
		cctx, cancel := context.WithTimeout(l.disc.ctx, exchangeTimeout)
		defer cancel()
		tok, err := l.oauth2(p).TokenSource(cctx, &oauth2.Token{RefreshToken: ss.Refresh}).Token()
		if err != nil {
			return nil, fmt.Errorf("refresh: %w", err)
		}
		now := time.Now()
		fresh := *ss
		fresh.Refresh = tok.RefreshToken
		fresh.AccessExp = 0
		if !tok.Expiry.IsZero() {
			fresh.AccessExp = tok.Expiry.Unix()
		}
		if raw, _ := tok.Extra("id_token").(string); raw != "" {
			idt, err := p.Verifier(&gooidc.Config{ClientID: l.cfg.ClientID}).Verify(cctx, raw)
			if err != nil {
				return nil, fmt.Errorf("refresh: id token: %w", err)
			}
			// OpenID Connect Core §12.2: a refreshed ID token is about the same user.
			if idt.Subject != ss.Sub {
				return nil, errors.New("refresh: the new id token has another subject")
			}
			claims, err := userClaims(idt)
			if err != nil {
				return nil, err
			}
			fresh.Claims, fresh.IDToken, fresh.Fresh = claims, raw, idt.Expiry.Unix()
		} else if fresh.AccessExp > now.Unix() {
			fresh.Fresh = fresh.AccessExp
		} else {
			fresh.Fresh = now.Add(minRecheck).Unix()
		}
		return &fresh, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*session), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the request ended while refreshing: %w", errUnavailable, ctx.Err())
	}
}

// logout ends the session here and, when the provider supports it, at the provider
// (OpenID Connect RP-Initiated Logout 1.0).
func (l *login) logout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return &policy.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Detail: "logout takes GET or POST", Header: http.Header{"Allow": {"GET, POST"}}}
	}
	var hint string
	if ss, _ := l.readSession(r); ss != nil {
		hint = ss.IDToken // an expired ID token is still a valid hint
	}
	l.clearCookie(w, l.cfg.CookieName, "/")
	target := "/"
	if l.cfg.PostLogoutRedirectURL != "" {
		target = l.cfg.PostLogoutRedirectURL
	}
	// Logging out must work while the provider is down: then only the local session ends.
	if p, err := l.disc.get(r.Context()); err == nil && p.endSession != "" {
		if u, err := url.Parse(p.endSession); err == nil {
			q := u.Query()
			if hint != "" {
				q.Set("id_token_hint", hint)
			}
			q.Set("client_id", l.cfg.ClientID)
			if l.cfg.PostLogoutRedirectURL != "" {
				q.Set("post_logout_redirect_uri", l.cfg.PostLogoutRedirectURL)
			}
			u.RawQuery = q.Encode()
			target = u.String()
		}
	}
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	return redirect(w, target, status)
}

func (l *login) oauth2(p *provider) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	return &oauth2.Config{
		ClientID:     l.cfg.ClientID,
		ClientSecret: l.secret,
		Endpoint:     ep,
		RedirectURL:  l.cfg.RedirectURL,
		Scopes:       l.cfg.Scopes,
	}
}

// readSession returns the request's session, and whether a session cookie was present at all
// (a present but unreadable one is cleared). Two cookies of that name are ambiguous and read as
// none.
func (l *login) readSession(r *http.Request) (*session, bool) {
	if _, ok := r.Header["Cookie"]; !ok {
		return nil, false
	}
	cs := r.CookiesNamed(l.cfg.CookieName)
	if len(cs) == 0 {
		return nil, false
	}
	if len(cs) > 1 {
		return nil, true
	}
	var ss session
	if err := l.seal.open(l.seal.sessionAD, cs[0].Value, &ss); err != nil || ss.Sub == "" {
		l.log.Debug("oidc session cookie refused", "err", err)
		return nil, true
	}
	return &ss, true
}

func (l *login) setSession(w http.ResponseWriter, ss *session) error {
	v, err := l.seal.sealSession(ss, l.keep)
	if err != nil {
		return fmt.Errorf("oidc session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: l.cfg.CookieName, Value: v, Path: "/", Domain: l.cfg.CookieDomain,
		MaxAge: max(1, int(time.Until(ss.until())/time.Second)), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

func (l *login) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, Domain: l.cfg.CookieDomain,
		MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}

// strip removes the policy's cookies from the request: the session is the gateway's, not the
// upstream's. Other cookies are kept.
func (l *login) strip(r *http.Request) {
	vs := r.Header["Cookie"]
	if len(vs) == 0 {
		return
	}
	found := false
	for _, c := range r.Cookies() {
		if c.Name == l.cfg.CookieName || c.Name == l.flowCookie {
			found = true
			break
		}
	}
	if !found {
		return
	}
	authn.Remove(r, &authn.Source{Cookie: l.cfg.CookieName})
	authn.Remove(r, &authn.Source{Cookie: l.flowCookie})
}

// principal maps a session to the caller: a consumer through consumer_claim, or the subject.
func (l *login) principal(ss *session) *policy.Principal {
	claims := make(map[string]any, len(ss.Claims)+1)
	for k, v := range ss.Claims {
		claims[k] = v
	}
	claims["sub"] = ss.Sub
	p := &policy.Principal{ID: ss.Sub, Method: Kind, Claims: claims}
	if l.cfg.ConsumerClaim != "" && l.consumers != nil {
		if name, ok := authn.ClaimString(claims, l.cfg.ConsumerClaim); ok {
			if c := l.consumers.Lookup(name); c != nil {
				p.ID, p.Groups, p.Plan, p.Consumer = c.Name, c.Groups, c.Plan, c
			}
		}
	}
	return p
}

// userClaims returns the ID token's claims about the user, without those about the token.
func userClaims(idt *gooidc.IDToken) (map[string]any, error) {
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("id token claims: %w", err)
	}
	for _, k := range tokenClaims {
		delete(claims, k)
	}
	if len(claims) == 0 {
		return nil, nil
	}
	return claims, nil
}

func redirect(w http.ResponseWriter, location string, status int) error {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return nil
}
