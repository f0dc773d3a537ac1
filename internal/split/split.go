// Package split is the terminal that divides a route's traffic between upstreams: rules first
// (blue-green, beta users by header or cookie), then a weighted split (canary), optionally sticky
// so a user does not flip between versions.
//
// Stickiness maps each user to a fixed bucket in [0, 10000) (a hash of the sticky key, or a
// random bucket remembered in a cookie); upstreams own consecutive bucket ranges in config order.
// Raising a canary's weight therefore moves only the users whose buckets change hands, and a
// rollback is a config change.
package split

import (
	"math/rand/v2"
	"net/http"
	"strconv"

	"github.com/limen-gateway/limen/policy"
)

// buckets is the resolution of a weighted split.
const buckets = 10000

// Rule sends requests whose headers and cookies all match to Handler.
type Rule struct {
	Headers map[string]string // canonical names
	Cookies map[string]string
	Handler policy.Handler
}

// Side is one share of the weighted split.
type Side struct {
	Weight  int
	Handler policy.Handler
}

// Options configure a split.
type Options struct {
	Rules []Rule
	Sides []Side
	// Sticky is "", consumer, client_ip, header:<canonical name> or cookie:<name>.
	StickyKind, StickyArg string
	// CookieMaxAge is how long a sticky cookie lasts.
	CookieMaxAge int
}

type splitter struct {
	o      Options
	bounds []int // bucket upper bounds per side, cumulative
}

// New builds the split terminal.
func New(o Options) policy.Handler {
	s := &splitter{o: o}
	total := 0
	for _, side := range o.Sides {
		total += side.Weight
	}
	acc := 0
	for _, side := range o.Sides {
		acc += side.Weight
		s.bounds = append(s.bounds, acc*buckets/total)
	}
	return s
}

func (s *splitter) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	for _, rule := range s.o.Rules {
		if matches(r, rule) {
			return rule.Handler.ServeHTTP(w, r)
		}
	}
	return s.side(s.bucket(w, r)).ServeHTTP(w, r)
}

func matches(r *http.Request, rule Rule) bool {
	for k, v := range rule.Headers {
		if r.Header.Get(k) != v {
			return false
		}
	}
	for k, v := range rule.Cookies {
		c, err := r.Cookie(k)
		if err != nil || c.Value != v {
			return false
		}
	}
	return true
}

func (s *splitter) side(b int) policy.Handler {
	for i, bound := range s.bounds {
		if b < bound {
			return s.o.Sides[i].Handler
		}
	}
	return s.o.Sides[len(s.o.Sides)-1].Handler
}

// bucket places the request in [0, buckets): by its sticky key, or at random.
func (s *splitter) bucket(w http.ResponseWriter, r *http.Request) int {
	var key string
	switch s.o.StickyKind {
	case "consumer":
		if p := policy.PrincipalFrom(r.Context()); p.Identified() {
			key = p.ID
		}
	case "client_ip":
		if a := policy.ClientIPFrom(r.Context()); a.IsValid() {
			key = a.Unmap().String()
		}
	case "header":
		key = r.Header.Get(s.o.StickyArg)
	case "cookie":
		if c, err := r.Cookie(s.o.StickyArg); err == nil {
			if b, err := strconv.Atoi(c.Value); err == nil && b >= 0 && b < buckets {
				return b
			}
		}
		b := rand.IntN(buckets)
		http.SetCookie(w, &http.Cookie{Name: s.o.StickyArg, Value: strconv.Itoa(b), Path: "/",
			MaxAge: s.o.CookieMaxAge, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
		return b
	}
	if key == "" {
		return rand.IntN(buckets)
	}
	return int(fnv1a(key) % buckets)
}

// fnv1a is FNV-1a over key: a fixed hash, so every node, every restart and every reload puts a
// user in the same bucket.
func fnv1a(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h
}
