// Package introspection provides the oauth2_introspection policy: opaque bearer tokens checked
// by asking the authorization server (OAuth 2.0 Token Introspection, RFC 7662).
//
// The gateway authenticates to the introspection endpoint as a client (HTTP Basic, RFC 7662
// §2.1), never follows its redirects and caps its answers. Answers are remembered (active ones
// for at most cache_ttl and never past the token's exp, inactive ones for negative_cache_ttl),
// and concurrent requests with the same token share one call. Tokens are never stored: the cache
// and the coalescing are keyed by the token's SHA-256. When the server cannot answer, requests
// get 503 rather than being let in or told their token is bad, and nothing is cached.
package introspection

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "oauth2_introspection"

const (
	// maxTokenBytes bounds a presented token: larger ones are refused without a call (no
	// authorization server mints bearer tokens this large, and each call costs the server).
	maxTokenBytes = 8192
	// maxResponseBytes caps an introspection response: an endpoint that streams without end
	// must not exhaust memory.
	maxResponseBytes = 1 << 20
	// maxCachedBytes is the largest response that is cached; larger ones are used once. It keeps
	// a full cache within cache_size × 16 KiB of memory.
	maxCachedBytes = 16 << 10
	// warnInterval spaces the warnings about a failing server: one per instance per interval.
	warnInterval = 10 * time.Second
)

var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*introspector)(nil)

type introspector struct {
	cfg       Config
	ep        *endpoint
	release   func()
	auth      string // the Authorization header value for the introspection server
	consumers policy.Consumers
	anonymous *policy.Principal
	forward   authn.ClaimHeaders
	log       *slog.Logger
	warn      rate.Sometimes
	failures  atomic.Int64 // failures since the last warning

	missing, invalid *policy.Error
	unavailable      *policy.Error
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	anon, err := authn.Anonymous(bc.Consumers, c.Anonymous)
	if err != nil {
		return nil, err
	}
	secret := os.Getenv(c.ClientSecretEnv)
	if secret == "" {
		return nil, fmt.Errorf("client_secret_env: the environment variable %s is unset or empty; set it to the client secret", c.ClientSecretEnv)
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
	v := &introspector{
		cfg:       *c,
		consumers: bc.Consumers,
		anonymous: anon,
		log:       log,
		warn:      rate.Sometimes{Interval: warnInterval},
		// RFC 6749 §2.3.1: the client id and secret are form-encoded before base64.
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.ClientID)+":"+url.QueryEscape(secret))),
	}
	v.forward = authn.NewClaimHeaders(c.ForwardClaims)

	// The endpoint (client and cache) is keyed by what it is: the server, who asks, and whom
	// the gateway trusts to be the server. A reload that keeps those keeps the cache.
	obj, release, err := bc.Acquire(Kind+"|"+c.URL+"|"+c.ClientID+"|"+outbound.CAKey(caPEM), func() (any, error) { return newEndpoint(caPEM) })
	if err != nil {
		return nil, err
	}
	v.ep, v.release = obj.(*endpoint), release

	v.missing, v.invalid = authn.BearerChallenges(c.Realm)
	v.unavailable = authn.Unavailable("the authorization server could not check the token; retry later")
	return v, nil
}

// Close releases the shared endpoint.
func (v *introspector) Close() error {
	v.release()
	return nil
}

// Wrap authenticates the request, unless an earlier authentication policy already did.
func (v *introspector) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		v.forward.Strip(r.Header)
		ex, found, verify, err := authn.Begin(r, v.cfg.From, v.anonymous, v.cfg.Optional, v.missing, v.invalid)
		if !verify {
			if err != nil {
				return err
			}
			return next.ServeHTTP(w, r)
		}
		res, err := v.check(r.Context(), found.Value)
		if err != nil {
			return v.refuse(err)
		}
		p, err := v.principal(res)
		if err != nil {
			return v.refuse(err)
		}
		ex.Principal = p
		if !v.cfg.KeepToken {
			authn.Remove(r, found.Source)
		}
		v.forward.Set(r, res.claims)
		return next.ServeHTTP(w, r)
	})
}

// errServer marks a failure of the introspection server (as opposed to a bad token).
var errServer = errors.New("introspection failed")

// refuse turns err into the client's answer: 503 when the server could not answer, 401
// otherwise. Why is kept in Err, for the log only.
func (v *introspector) refuse(err error) error {
	if errors.Is(err, errServer) {
		return &policy.Error{Status: v.unavailable.Status, Code: v.unavailable.Code, Detail: v.unavailable.Detail, Header: v.unavailable.Header, Err: err}
	}
	return &policy.Error{Status: v.invalid.Status, Code: v.invalid.Code, Detail: v.invalid.Detail, Header: v.invalid.Header, Err: err}
}

// check returns the server's answer for an active token that passes the configured checks.
func (v *introspector) check(ctx context.Context, token string) (*result, error) {
	if token == "" {
		return nil, errors.New("empty token")
	}
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("token larger than %d bytes", maxTokenBytes)
	}
	key := digest(token)
	res := v.ep.lookup(key, time.Now(), v.cfg.CacheTTL.D(), v.cfg.NegativeCacheTTL.D())
	if res == nil {
		var err error
		if res, err = v.fetch(ctx, key, token); err != nil {
			return nil, err
		}
	}
	if !res.active {
		return nil, errors.New("the token is not active")
	}
	if v.cfg.Issuer != "" {
		if iss, _ := res.claims["iss"].(string); iss != v.cfg.Issuer {
			return nil, fmt.Errorf("iss %q is not %q", iss, v.cfg.Issuer)
		}
	}
	if len(v.cfg.Audiences) > 0 && !authn.ClaimMatches(res.claims, "aud", v.cfg.Audiences) {
		return nil, errors.New("aud names none of the configured audiences")
	}
	return res, nil
}

// digest is the token's SHA-256, the only form in which the cache and the coalescing hold it.
// A token of usual size is copied into a stack buffer so hashing it does not allocate.
func digest(token string) [32]byte {
	var buf [2048]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

// fetch asks the server, sharing the call with concurrent requests for the same token. The call
// runs on its own deadline, detached from the request that started it: a client that goes away
// must not fail the others waiting on the same answer, and the call must not hold on to a
// request's context (and its Exchange) after that request ended.
func (v *introspector) fetch(ctx context.Context, key [32]byte, token string) (*result, error) {
	ch := v.ep.flight.DoChan(string(key[:]), func() (any, error) {
		// A request that missed the cache just before an earlier call filled it finds it here.
		now := time.Now()
		if res := v.ep.lookup(key, now, v.cfg.CacheTTL.D(), v.cfg.NegativeCacheTTL.D()); res != nil {
			return res, nil
		}
		callCtx, cancel := context.WithTimeout(context.Background(), v.cfg.Timeout.D())
		defer cancel()
		res, size, err := v.introspect(callCtx, token)
		if err != nil {
			return nil, err
		}
		if size <= maxCachedBytes {
			v.ep.remember(key, res, now, v.expiry(res, now), v.cfg.CacheSize)
		}
		return res, nil
	})
	v.ep.waiting.Add(1)
	defer v.ep.waiting.Add(-1)
	select {
	case out := <-ch:
		if out.Err != nil {
			v.warnFailure(out.Err)
			return nil, out.Err
		}
		return out.Val.(*result), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the request ended while waiting: %w", errServer, ctx.Err())
	}
}

// expiry is when a fresh answer stops being served from the cache; the zero time means it is
// not cached at all.
func (v *introspector) expiry(res *result, now time.Time) time.Time {
	if !res.active {
		if ttl := v.cfg.NegativeCacheTTL.D(); ttl > 0 {
			return now.Add(ttl)
		}
		return time.Time{}
	}
	ttl := v.cfg.CacheTTL.D()
	if ttl <= 0 {
		return time.Time{}
	}
	until := now.Add(ttl)
	if exp, present := res.claims["exp"]; present {
		secs, ok := exp.(float64)
		if !ok {
			return time.Time{} // a malformed exp: use the answer once, trust it no longer
		}
		expires := time.Unix(int64(secs), 0)
		if !expires.After(now) {
			return time.Time{}
		}
		if expires.Before(until) {
			until = expires
		}
	}
	return until
}

// warnFailure logs a server failure, at most once per warnInterval, with the number of
// failures since the last line.
func (v *introspector) warnFailure(err error) {
	n := v.failures.Add(1)
	v.warn.Do(func() {
		v.log.Warn("token introspection failed; requests with uncached tokens get 503 until the server answers",
			"url", v.cfg.URL, "err", err, "failures", n)
		v.failures.Add(-n)
	})
}

// introspect makes one call (RFC 7662 §2.1) and reads the answer. Any answer but a 200 with a
// JSON object carrying a boolean "active" is a server failure. It also returns the size of the
// response body.
func (v *introspector) introspect(ctx context.Context, token string) (*result, int, error) {
	form := url.Values{"token": {token}, "token_type_hint": {v.cfg.TokenTypeHint}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errServer, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", v.auth)
	v.ep.calls.Add(1)
	resp, err := v.ep.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errServer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // so the connection is reused
		return nil, 0, fmt.Errorf("%w: the server answered %d", errServer, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: reading the response: %w", errServer, err)
	}
	if len(body) > maxResponseBytes {
		return nil, 0, fmt.Errorf("%w: response larger than %d bytes", errServer, maxResponseBytes)
	}
	res, err := parse(body)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errServer, err)
	}
	return res, len(body), nil
}

// parse reads an introspection response (RFC 7662 §2.2): one JSON object with a boolean
// "active". Only an active token's members are kept.
func parse(body []byte) (*result, error) {
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("the response is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the JSON object")
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, errors.New(`the response has no boolean "active"`)
	}
	res := &result{active: active}
	if active {
		res.claims = claims
		if s, ok := claims["scope"].(string); ok {
			res.scopes = strings.Fields(s) // space-separated, RFC 7662 §2.2
		}
		for _, member := range []string{"sub", "username", "client_id"} {
			if s, ok := claims[member].(string); ok && s != "" {
				res.subject = s
				break
			}
		}
	}
	return res, nil
}

// principal maps an active token to the caller: a consumer through consumer_claim, or the
// token's subject (sub, else username, else client_id).
func (v *introspector) principal(res *result) (*policy.Principal, error) {
	p := &policy.Principal{ID: res.subject, Method: Kind, Scopes: res.scopes, Claims: res.claims}
	if v.cfg.ConsumerClaim != "" && v.consumers != nil {
		if name, ok := authn.ClaimString(res.claims, v.cfg.ConsumerClaim); ok {
			if c := v.consumers.Lookup(name); c != nil {
				p.ID, p.Groups, p.Plan, p.Consumer = c.Name, c.Groups, c.Plan, c
			}
		}
	}
	if p.Consumer == nil && v.cfg.RequireConsumer {
		return nil, fmt.Errorf("claim %s names no configured consumer", v.cfg.ConsumerClaim)
	}
	if p.ID == "" {
		return nil, errors.New("the token has no subject, username or client_id and maps to no consumer")
	}
	return p, nil
}

// result is one answer of the server. It is shared by every request with the same token while
// cached: never modify it.
type result struct {
	active  bool
	claims  map[string]any // the whole response, for an active token
	scopes  []string
	subject string // sub, else username, else client_id
}

// cached is a remembered answer: fetched at at, served until expires (the bound set by the
// instance that fetched it; each instance also applies its own TTL on reading).
type cached struct {
	res         *result
	at, expires time.Time
}

// endpoint is one introspection server as one client sees it: the HTTP client and the answers
// cache. It lives in the Pool, keyed by URL, client id and CA, so every route using that server
// shares one cache and a reload keeps it.
type endpoint struct {
	client  *http.Client
	flight  singleflight.Group
	calls   atomic.Int64 // introspection calls made, for tests and metrics
	waiting atomic.Int64 // requests waiting on a call, for tests and metrics

	mu      sync.RWMutex
	results map[[32]byte]cached
}

// newEndpoint makes the client: system roots plus caPEM, TLS 1.2 at least, no proxy from the
// environment, no redirects (a redirect could send the token and the client secret elsewhere).
func newEndpoint(caPEM []byte) (*endpoint, error) {
	client, err := outbound.New(outbound.Options{
		CA:                  caPEM,
		DialTimeout:         5 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &endpoint{client: client, results: map[[32]byte]cached{}}, nil
}

// lookup returns the remembered answer for the token digest key, or nil. An answer is served
// while the bound set when it was stored holds and it is younger than this instance's TTL for
// its kind.
func (e *endpoint) lookup(key [32]byte, now time.Time, ttl, negativeTTL time.Duration) *result {
	e.mu.RLock()
	c, ok := e.results[key]
	e.mu.RUnlock()
	if !ok || !now.Before(c.expires) {
		return nil
	}
	if !c.res.active {
		ttl = negativeTTL
	}
	if !now.Before(c.at.Add(ttl)) {
		return nil
	}
	return c.res
}

// remember stores an answer fetched at at until expires (nothing when expires is zero),
// keeping at most size answers. A full cache drops expired answers first; when that is not
// enough it drops arbitrary ones, a tenth of size at a time so the scan is paid once per many
// stores. A dropped answer only costs a call.
func (e *endpoint) remember(key [32]byte, res *result, at, expires time.Time, size int) {
	if expires.IsZero() || size <= 0 {
		return
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.results[key]; !ok && len(e.results) >= size {
		for k, c := range e.results {
			if !now.Before(c.expires) {
				delete(e.results, k)
			}
		}
		if len(e.results) >= size {
			target := size - max(1, size/10)
			for k := range e.results {
				if len(e.results) <= target {
					break
				}
				delete(e.results, k)
			}
		}
	}
	e.results[key] = cached{res: res, at: at, expires: expires}
}

// Close closes idle connections to the server.
func (e *endpoint) Close() error {
	e.client.CloseIdleConnections()
	return nil
}
