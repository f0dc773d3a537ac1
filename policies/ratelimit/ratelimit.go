// Package ratelimit provides the rate_limit policy: several rates at once per key (client IP,
// consumer, route, header, claim, or a combination), enforced with GCRA so no window edge lets
// twice the rate through, with the IETF RateLimit-Policy / RateLimit headers and 429 +
// Retry-After when a request is refused.
//
// Counters live in the Pool, keyed by the instance id and the key spec, never by the rates, so a
// reload that changes a rate keeps the counts.
package ratelimit

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/internal/state"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "rate_limit"

// phases: Limit by default (after authentication, so consumers can be keyed); Edge for an IP
// limit that shields costly authentication from floods.
var phases = policy.PhaseRange{Default: policy.Limit, Min: policy.Edge, Max: policy.Cache}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*limiter)(nil)

// maxKeyBytes is the longest key stored as it is; longer ones are replaced by their SHA-256.
const maxKeyBytes = 64

type keyPart struct {
	kind string // client_ip, consumer, route, header, claim
	arg  string
}

type limiter struct {
	cfg     Config
	parts   []keyPart
	limits  []state.Limit
	store   *state.MemoryLimiter // concrete: through an interface the key buffer would escape
	redis   *state.RedisLimiter  // backend: redis; store is then the precheck and the on_error: local fallback
	release func()
	policy  []string // the RateLimit-Policy value, built once and shared by every response
	now     func() time.Time

	missing *policy.Error
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	l := &limiter{cfg: *c, now: time.Now}
	for _, k := range c.Key {
		name, arg, _ := strings.Cut(k, ":")
		if name == "header" {
			arg = http.CanonicalHeaderKey(arg)
		}
		l.parts = append(l.parts, keyPart{kind: name, arg: arg})
	}
	var pol []string
	for _, lc := range c.Limits {
		l.limits = append(l.limits, state.Limit{Requests: lc.Requests, Per: lc.Per.D(), Burst: lc.Burst})
		pol = append(pol, `"`+lc.Name+`";q=`+strconv.Itoa(lc.Requests)+`;w=`+strconv.FormatInt(ceilSeconds(lc.Per.D()), 10))
	}
	l.policy = []string{strings.Join(pol, ", ")}
	if c.Backend == "redis" {
		r, _ := bc.Shared["redis"].(*state.Redis)
		if r == nil {
			return nil, errors.New("backend: redis needs a top-level state: { redis: { url: ... } }")
		}
		l.redis = r.Limiter(bc.ID + ":" + strings.Join(c.Key, ","))
	}
	key := "ratelimit|" + bc.ID + "|" + strings.Join(c.Key, ",") + "|" + strconv.Itoa(c.IPv6Prefix)
	obj, release, err := bc.Acquire(key, func() (any, error) { return state.NewMemoryLimiter(c.MaxKeys), nil })
	if err != nil {
		return nil, err
	}
	l.store, l.release = obj.(*state.MemoryLimiter), release
	l.missing = &policy.Error{Status: http.StatusTooManyRequests, Code: "rate_limit_key_missing",
		Detail: "this request cannot be attributed to a rate-limit key"}
	return l, nil
}

// Close releases the shared counters.
func (l *limiter) Close() error {
	l.release()
	return nil
}

func (l *limiter) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var buf [256]byte
		key, ok := l.key(buf[:0], r)
		if ok && len(key) > maxKeyBytes {
			// A client chooses header values: a long one is stored as its digest, so a key
			// costs the same whatever the client sends.
			sum := sha256.Sum256(key)
			key = append(buf[:0], sum[:]...)
		}
		if !ok {
			if l.cfg.MissingKey == "deny" {
				return l.missing
			}
			return next.ServeHTTP(w, r)
		}
		d, err := l.decide(r, key)
		if err != nil {
			return err
		}
		if !d.Allowed {
			h := http.Header{
				"Retry-After": {strconv.FormatInt(ceilSeconds(d.RetryAfter), 10)},
			}
			if *l.cfg.Headers {
				h["Ratelimit-Policy"] = l.policy
				h["Ratelimit"] = []string{l.state(d, 0)}
			}
			return &policy.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
				Detail: "too many requests; retry after the time in Retry-After", Header: h}
		}
		if *l.cfg.Headers && d.Remaining >= 0 {
			wh := w.Header()
			wh["Ratelimit-Policy"] = l.policy
			wh["Ratelimit"] = []string{l.state(d, d.Remaining)}
		}
		return next.ServeHTTP(w, r)
	})
}

var errStateUnavailable = &policy.Error{Status: http.StatusServiceUnavailable, Code: "rate_limit_unavailable",
	Detail: "the shared rate-limit state is unavailable; retry shortly", Header: http.Header{"Retry-After": {"1"}}}

// decide asks the local table or Redis. With Redis: an optional local precheck first, and the
// policy's on_error while Redis is unreachable.
func (l *limiter) decide(r *http.Request, key []byte) (state.Decision, error) {
	if l.redis == nil {
		return l.store.Allow(key, l.limits, l.now()), nil
	}
	if l.cfg.LocalPrecheck {
		// This node's own share can only be smaller than the cluster's: if it alone is over,
		// the cluster is too.
		if d := l.store.Allow(key, l.limits, l.now()); !d.Allowed {
			return d, nil
		}
	}
	d, err := l.redis.Allow(r.Context(), key, l.limits)
	if err == nil {
		return d, nil
	}
	switch l.cfg.OnError {
	case "allow":
		return state.Decision{Allowed: true, Remaining: -1}, nil
	case "deny":
		return state.Decision{}, errStateUnavailable
	}
	if l.cfg.LocalPrecheck {
		return state.Decision{Allowed: true, Remaining: -1}, nil // already counted locally above
	}
	return l.store.Allow(key, l.limits, l.now()), nil
}

// state renders the RateLimit field for the deciding limit.
func (l *limiter) state(d state.Decision, remaining int) string {
	var b [96]byte
	out := append(b[:0], '"')
	out = append(out, l.cfg.Limits[d.Limit].Name...)
	out = append(out, `";r=`...)
	out = strconv.AppendInt(out, int64(remaining), 10)
	out = append(out, ";t="...)
	out = strconv.AppendInt(out, ceilSeconds(d.Reset), 10)
	return string(out)
}

// key appends the request's key parts to b, separated by a byte no part contains unescaped.
func (l *limiter) key(b []byte, r *http.Request) ([]byte, bool) {
	ex := policy.ExchangeFrom(r.Context())
	for i, p := range l.parts {
		if i > 0 {
			b = append(b, 0x1f)
		}
		switch p.kind {
		case "client_ip":
			if ex == nil || !ex.ClientIP.IsValid() {
				return nil, false
			}
			b = appendClientIP(b, ex.ClientIP, l.cfg.IPv6Prefix)
		case "consumer":
			if ex == nil || !ex.Principal.Identified() {
				return nil, false
			}
			b = append(b, ex.Principal.ID...)
		case "route":
			if ex == nil {
				return nil, false
			}
			b = append(b, ex.Route...)
		case "header":
			v := r.Header[p.arg]
			if len(v) == 0 || v[0] == "" {
				return nil, false
			}
			b = append(b, v[0]...)
		case "claim":
			if ex == nil || ex.Principal == nil {
				return nil, false
			}
			v, ok := authn.Claim(ex.Principal.Claims, p.arg)
			if !ok {
				return nil, false
			}
			s, ok := authn.Scalar(v)
			if !ok {
				return nil, false
			}
			b = append(b, s...)
		}
	}
	return b, true
}

// appendClientIP groups IPv6 clients by prefix (one client usually owns a whole /64, and could
// otherwise take a fresh budget from every address in it).
func appendClientIP(b []byte, a netip.Addr, v6prefix int) []byte {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(v6prefix); err == nil {
			b = p.Addr().AppendTo(b)
			b = append(b, '/')
			return strconv.AppendInt(b, int64(v6prefix), 10)
		}
	}
	return a.AppendTo(b)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
