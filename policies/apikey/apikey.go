// Package apikey provides the api_key policy: a consumer's API key read from a header, query
// parameter or cookie, checked against the SHA-256 digests configured under consumers, and
// removed before the request goes upstream.
//
// The presented key is hashed and the digest looked up; nothing compares key bytes, so the time
// a check takes says nothing usable about a stored key. Keys of more than maxKeyLen bytes are
// refused without hashing.
package apikey

import (
	"crypto/sha256"
	"net/http"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "api_key"

// maxKeyLen bounds a presented key: longer ones are refused before hashing (no key minted for
// people is this long, and hashing attacker-sized input is work for nothing).
const maxKeyLen = 512

// phases: Authn, or Edge for a cheap identity check before anything else.
var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	anon, err := authn.Anonymous(bc.Consumers, c.Anonymous)
	if err != nil {
		return nil, err
	}
	challenge := "Key realm=" + authn.QuoteParam(c.Realm)
	return &apiKey{
		cfg:       *c,
		consumers: bc.Consumers,
		anonymous: anon,
		missing:   authn.Challenge("api_key_missing", "an API key is required", challenge),
		invalid:   authn.Challenge("api_key_invalid", "the API key is not valid", challenge),
	}, nil
}

var _ policy.Policy = (*apiKey)(nil)

type apiKey struct {
	cfg       Config
	consumers policy.Consumers
	anonymous *policy.Principal
	missing   *policy.Error
	invalid   *policy.Error
}

// Wrap authenticates the request, unless an earlier authentication policy already did (several
// methods on one route are tried in order; the first that identifies the caller wins).
func (a *apiKey) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ex, found, verify, err := authn.Begin(r, a.cfg.From, a.anonymous, a.cfg.Optional, a.missing, a.invalid)
		if !verify {
			if err != nil {
				return err
			}
			return next.ServeHTTP(w, r)
		}
		p := a.lookup(found.Value)
		if p == nil {
			return a.invalid
		}
		ex.Principal = p
		if !a.cfg.KeepCredential {
			authn.Remove(r, found.Source)
		}
		return next.ServeHTTP(w, r)
	})
}

// lookup hashes key and finds its consumer. The key is copied into a stack buffer so the hash
// does not allocate.
func (a *apiKey) lookup(key string) *policy.Principal {
	if key == "" || len(key) > maxKeyLen || a.consumers == nil {
		return nil
	}
	var buf [maxKeyLen]byte
	n := copy(buf[:], key)
	return a.consumers.APIKey(sha256.Sum256(buf[:n]))
}
