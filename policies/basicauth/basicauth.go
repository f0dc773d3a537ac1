// Package basicauth provides the basic_auth policy: RFC 7617 credentials checked against the
// bcrypt or argon2id hashes of consumers' logins and an optional htpasswd file.
//
// Password hashes are deliberately slow, so successful verifications are remembered for a short
// time (keyed by a salted digest of the username and password, never the password itself) and
// concurrent checks of the same credentials are coalesced into one. An unknown username costs
// the same hash as a known one, so timing does not reveal which usernames exist. Put an IP rate
// limit before this policy (phase: edge) so floods cannot buy hash computations.
package basicauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "basic_auth"

// maxCredentialLen bounds the decoded username:password; longer headers are refused unhashed.
const maxCredentialLen = 1024

var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	anon, err := authn.Anonymous(bc.Consumers, c.Anonymous)
	if err != nil {
		return nil, err
	}
	a := &basicAuth{
		cfg:       *c,
		consumers: bc.Consumers,
		anonymous: anon,
		logins:    map[string]login{},
		cache:     map[[32]byte]cached{},
	}
	if _, err := rand.Read(a.salt[:]); err != nil {
		return nil, err
	}
	if c.Htpasswd != "" {
		f, err := os.Open(c.Htpasswd.Path(bc.BaseDir))
		if err != nil {
			return nil, fmt.Errorf("htpasswd: %w", err)
		}
		entries, err := parseHtpasswd(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("htpasswd %s: %w", c.Htpasswd, err)
		}
		for user, h := range entries {
			a.logins[user] = login{p: &policy.Principal{ID: user, Method: "basic_auth", Credential: user}, h: h}
		}
	}
	challenge := "Basic realm=" + authn.QuoteParam(c.Realm) + `, charset="UTF-8"`
	a.missing = authn.Challenge("credentials_missing", "credentials are required", challenge)
	a.invalid = authn.Challenge("credentials_invalid", "the credentials are not valid", challenge)
	return a, nil
}

var _ policy.Policy = (*basicAuth)(nil)

type login struct {
	p *policy.Principal
	h hasher
}

type cached struct {
	p       *policy.Principal
	expires time.Time
}

type basicAuth struct {
	cfg       Config
	consumers policy.Consumers
	anonymous *policy.Principal
	logins    map[string]login // from the htpasswd file
	missing   *policy.Error
	invalid   *policy.Error
	salt      [16]byte

	flight singleflight.Group
	hashes atomic.Int64 // password hashes computed, for tests and metrics
	mu     sync.Mutex
	cache  map[[32]byte]cached
}

// Wrap authenticates the request unless an earlier authentication policy already did.
func (a *basicAuth) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ex := policy.ExchangeFrom(r.Context())
		if ex == nil {
			return a.invalid
		}
		if ex.Principal.Identified() {
			return next.ServeHTTP(w, r)
		}
		auth, present := r.Header["Authorization"]
		if !present || len(auth) == 1 && !hasScheme(auth[0], "Basic") {
			// No credentials, or credentials of another scheme (a Bearer token for a later
			// jwt policy): this policy has nothing to check.
			if err := authn.Absent(ex, a.anonymous, a.cfg.Optional, a.missing); err != nil {
				return err
			}
			return next.ServeHTTP(w, r)
		}
		if len(auth) != 1 {
			return a.invalid
		}
		user, pass, ok := decode(auth[0])
		if !ok {
			return a.invalid
		}
		p := a.verify(user, pass)
		if p == nil {
			return a.invalid
		}
		ex.Principal = p
		r.Header.Del("Authorization") // the upstream gets the identity headers, not the password
		return next.ServeHTTP(w, r)
	})
}

func hasScheme(v, scheme string) bool {
	return len(v) > len(scheme) && v[len(scheme)] == ' ' && strings.EqualFold(v[:len(scheme)], scheme)
}

// decode reads "Basic base64(user:pass)" (RFC 7617 §2).
func decode(v string) (user, pass string, ok bool) {
	if !hasScheme(v, "Basic") {
		return "", "", false
	}
	enc := strings.TrimSpace(v[len("Basic "):])
	if base64.StdEncoding.DecodedLen(len(enc)) > maxCredentialLen {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	if !ok || user == "" || strings.ContainsAny(user, "\x00\r\n") {
		return "", "", false
	}
	return user, pass, true
}

// dummyHash is what an unknown username is checked against, so it costs what a known one does.
var dummyHash = func() bcryptHash {
	h, _ := bcrypt.GenerateFromPassword([]byte("limen-no-such-user"), bcrypt.DefaultCost)
	return bcryptHash(h)
}()

// verify returns the principal for valid credentials, or nil.
func (a *basicAuth) verify(user, pass string) *policy.Principal {
	key := a.cacheKey(user, pass)
	if p := a.cached(key); p != nil {
		return p
	}
	v, _, _ := a.flight.Do(string(key[:]), func() (any, error) {
		// A caller that missed the cache just before an earlier flight filled it finds it here.
		if p := a.cached(key); p != nil {
			return p, nil
		}
		a.hashes.Add(1)
		p, h := a.lookup(user)
		if h == nil {
			_ = dummyHash.verify([]byte(pass))
			return (*policy.Principal)(nil), nil
		}
		if !h.verify([]byte(pass)) {
			return (*policy.Principal)(nil), nil
		}
		a.remember(key, p)
		return p, nil
	})
	return v.(*policy.Principal)
}

func (a *basicAuth) lookup(user string) (*policy.Principal, hasher) {
	if a.consumers != nil {
		if p, hash := a.consumers.Basic(user); p != nil {
			h, err := parseHash(hash)
			if err != nil {
				return nil, nil // validated at load; unreachable unless the config lied
			}
			return p, h
		}
	}
	if l, ok := a.logins[user]; ok {
		return l.p, l.h
	}
	return nil, nil
}

// cacheKey is a salted digest of the credentials: the cache never holds a password, and the
// per-instance salt keeps its keys useless outside this process.
func (a *basicAuth) cacheKey(user, pass string) [32]byte {
	h := sha256.New()
	h.Write(a.salt[:])
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (a *basicAuth) cached(key [32]byte) *policy.Principal {
	if a.cfg.CacheTTL.D() <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	if !ok {
		return nil
	}
	if time.Now().After(c.expires) {
		delete(a.cache, key)
		return nil
	}
	return c.p
}

func (a *basicAuth) remember(key [32]byte, p *policy.Principal) {
	ttl := a.cfg.CacheTTL.D()
	if ttl <= 0 {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.cfg.CacheSize {
		// Full: drop expired entries, then arbitrary ones; a miss only costs a hash.
		for k, c := range a.cache {
			if len(a.cache) < a.cfg.CacheSize && now.Before(c.expires) {
				break
			}
			delete(a.cache, k)
		}
	}
	a.cache[key] = cached{p: p, expires: now.Add(ttl)}
}
