// Package jwt provides the jwt policy: bearer tokens verified with golang-jwt against an
// issuer's keys (a JWK Set URL kept fresh by keyfunc, OpenID Connect discovery, or local public
// keys), with the checks a public API needs: an algorithm allow-list (never "none", never HMAC),
// a required and checked expiry, issuer and audience, nbf/iat with leeway, typ and azp, no ID
// tokens as access tokens, and a size cap. Header parameters that point at keys (jku, x5u, jwk,
// x5c) are never followed: keys come from configuration only.
package jwt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "jwt"

var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*verifier)(nil)

type verifier struct {
	cfg       Config
	parser    *gojwt.Parser
	keys      keySet
	release   func()
	consumers policy.Consumers
	anonymous *policy.Principal
	forward   authn.ClaimHeaders

	missing, invalid *policy.Error
	unavailable      *policy.Error

	now      func() time.Time // the cache's clock, replaceable in tests
	verified atomic.Int64     // signature checks done, for tests
	mu       sync.Mutex
	cache    map[[32]byte]cachedToken
}

// cachedToken is a token that passed every check, with the principal it maps to.
type cachedToken struct {
	p       *policy.Principal
	expires time.Time
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	anon, err := authn.Anonymous(bc.Consumers, c.Anonymous)
	if err != nil {
		return nil, err
	}
	v := &verifier{cfg: *c, consumers: bc.Consumers, anonymous: anon, now: time.Now}
	if c.CacheSize > 0 {
		v.cache = make(map[[32]byte]cachedToken)
	}
	v.parser = gojwt.NewParser(
		gojwt.WithValidMethods(c.Algorithms),
		gojwt.WithExpirationRequired(), // v5 accepts a token without exp unless told otherwise
		gojwt.WithIssuer(c.Issuer),
		gojwt.WithAudience(c.Audiences...),
		gojwt.WithLeeway(c.Leeway.D()),
		gojwt.WithIssuedAt(),
		gojwt.WithStrictDecoding(),
	)
	v.forward = authn.NewClaimHeaders(c.ForwardClaims)

	if len(c.Keys) > 0 {
		lk, err := loadLocalKeys(bc.BaseDir, c.Keys)
		if err != nil {
			return nil, err
		}
		v.keys, v.release = lk, func() {}
	} else {
		log := bc.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		o := remoteOptions{issuer: c.Issuer, jwksURL: c.JWKSURL, refresh: c.RefreshInterval.D(), log: log}
		o.ca = c.CA.Path(bc.BaseDir)
		obj, release, err := bc.Acquire(o.poolKey(), func() (any, error) { return newRemoteKeys(o) })
		if err != nil {
			return nil, err
		}
		v.keys, v.release = obj.(*remoteKeys), release
	}

	v.missing, v.invalid = authn.BearerChallenges(c.Realm)
	v.unavailable = authn.Unavailable("the token issuer's keys are not available; retry later")
	return v, nil
}

// Close releases the shared key set.
func (v *verifier) Close() error {
	v.release()
	return nil
}

// Wrap authenticates the request, unless an earlier authentication policy already did.
func (v *verifier) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		v.forward.Strip(r.Header)
		ex, found, verify, err := authn.Begin(r, v.cfg.From, v.anonymous, v.cfg.Optional, v.missing, v.invalid)
		if !verify {
			if err != nil {
				return err
			}
			return next.ServeHTTP(w, r)
		}
		p, err := v.authenticate(r.Context(), found.Value)
		if err != nil {
			if errors.Is(err, errKeysUnavailable) {
				return v.unavailable
			}
			return &policy.Error{Status: v.invalid.Status, Code: v.invalid.Code, Detail: v.invalid.Detail, Header: v.invalid.Header, Err: err}
		}
		claims := p.Claims
		ex.Principal = p
		if !v.cfg.KeepToken {
			authn.Remove(r, found.Source)
		}
		v.forward.Set(r, claims)
		return next.ServeHTTP(w, r)
	})
}

// authenticate returns the principal for a token, from the cache of verified tokens when it
// is on.
func (v *verifier) authenticate(ctx context.Context, token string) (*policy.Principal, error) {
	var key [32]byte
	if v.cache != nil && len(token) <= v.cfg.MaxTokenBytes {
		key = sha256.Sum256([]byte(token))
		v.mu.Lock()
		c, ok := v.cache[key]
		v.mu.Unlock()
		if ok && v.now().Before(c.expires) {
			return c.p, nil
		}
	}
	claims, err := v.verify(ctx, token)
	if err != nil {
		return nil, err
	}
	p, err := v.principal(claims)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.remember(key, p, claims)
	}
	return p, nil
}

// remember caches a verified token until its exp or cache_ttl, whichever comes first.
func (v *verifier) remember(key [32]byte, p *policy.Principal, claims gojwt.MapClaims) {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return
	}
	now := v.now()
	until := now.Add(v.cfg.CacheTTL.D())
	if exp.Time.Before(until) {
		until = exp.Time
	}
	if !now.Before(until) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cfg.CacheSize {
		// Full: drop expired entries, then arbitrary ones; a miss only costs a verification.
		for k, c := range v.cache {
			if len(v.cache) < v.cfg.CacheSize && now.Before(c.expires) {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = cachedToken{p: p, expires: until}
}

// verify parses and checks a token; the error says why, for the log only.
func (v *verifier) verify(ctx context.Context, token string) (gojwt.MapClaims, error) {
	if token == "" {
		return nil, errors.New("empty token")
	}
	if len(token) > v.cfg.MaxTokenBytes {
		return nil, fmt.Errorf("token larger than %d bytes", v.cfg.MaxTokenBytes)
	}
	claims := gojwt.MapClaims{}
	v.verified.Add(1)
	tok, err := v.parser.ParseWithClaims(token, claims, v.keys.keyfunc(ctx))
	if err != nil {
		if errors.Is(err, errKeysUnavailable) {
			return nil, errKeysUnavailable
		}
		return nil, err
	}
	if !v.typeAllowed(tok.Header["typ"]) {
		return nil, fmt.Errorf("token type %v is not accepted", tok.Header["typ"])
	}
	if _, isIDToken := claims["nonce"]; isIDToken && !v.cfg.AcceptIDTokens {
		return nil, errors.New("an ID token (it carries a nonce) is not an access token")
	}
	if len(v.cfg.AuthorizedParties) > 0 {
		azp, _ := claims["azp"].(string)
		if !slices.Contains(v.cfg.AuthorizedParties, azp) {
			return nil, fmt.Errorf("azp %q is not allowed", azp)
		}
	}
	for name, want := range v.cfg.RequiredClaims {
		if !authn.ClaimMatches(claims, name, want) {
			return nil, fmt.Errorf("claim %s does not match", name)
		}
	}
	return claims, nil
}

func (v *verifier) typeAllowed(typ any) bool {
	if typ == nil {
		return true
	}
	s, ok := typ.(string)
	if !ok {
		return false
	}
	s = strings.TrimPrefix(strings.ToLower(s), "application/")
	for _, t := range v.cfg.TokenTypes {
		if strings.EqualFold(t, s) {
			return true
		}
	}
	return false
}

// principal maps verified claims to the caller: a consumer through consumer_claim, or the
// token's subject.
func (v *verifier) principal(claims gojwt.MapClaims) (*policy.Principal, error) {
	sub, _ := claims["sub"].(string)
	p := &policy.Principal{ID: sub, Method: "jwt", Scopes: scopes(claims), Claims: claims}
	if v.cfg.ConsumerClaim != "" && v.consumers != nil {
		if name, ok := authn.ClaimString(claims, v.cfg.ConsumerClaim); ok {
			if c := v.consumers.Lookup(name); c != nil {
				p.ID, p.Groups, p.Plan, p.Consumer = c.Name, c.Groups, c.Plan, c
			}
		}
		if p.Consumer == nil && v.cfg.RequireConsumer {
			return nil, fmt.Errorf("claim %s names no configured consumer", v.cfg.ConsumerClaim)
		}
	}
	if p.ID == "" {
		return nil, errors.New("the token has no subject and maps to no consumer")
	}
	return p, nil
}

// scopes reads "scope" (space-separated, RFC 8693 §4.2) or "scp" (a string or a list).
func scopes(claims gojwt.MapClaims) []string {
	for _, name := range []string{"scope", "scp"} {
		switch x := claims[name].(type) {
		case string:
			return strings.Fields(x)
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
			return out
		}
	}
	return nil
}
