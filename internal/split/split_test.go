package split

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

// tag is a terminal that records which side served.
func tag(name string, got *string) policy.Handler {
	return policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { *got = name; return nil })
}

func TestWeightsRulesAndStickiness(t *testing.T) {
	t.Parallel()
	var served string
	v1, v2, beta := tag("v1", &served), tag("v2", &served), tag("beta", &served)
	h := New(Options{
		Rules: []Rule{{Headers: map[string]string{"X-Beta": "true"}, Handler: beta}, {Cookies: map[string]string{"channel": "beta"}, Handler: beta}},
		Sides: []Side{{Weight: 90, Handler: v1}, {Weight: 10, Handler: v2}},
	})
	counts := map[string]int{}
	for range 10000 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		counts[served]++
	}
	// 10% canary: binomial, sd ~30; bounds at ~6 sd.
	if counts["v2"] < 800 || counts["v2"] > 1200 || counts["beta"] != 0 {
		t.Fatalf("90/10 split over 10,000 requests: %v", counts)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Beta", "true")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if served != "beta" {
		t.Fatalf("header rule: %s", served)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "channel", Value: "beta"})
	h.ServeHTTP(httptest.NewRecorder(), r)
	if served != "beta" {
		t.Fatalf("cookie rule: %s", served)
	}
}

func TestStickyHeaderAndWeightChanges(t *testing.T) {
	t.Parallel()
	var served string
	build := func(canary int) policy.Handler {
		return New(Options{StickyKind: "header", StickyArg: "X-User",
			Sides: []Side{{Weight: 100 - canary, Handler: tag("stable", &served)}, {Weight: canary, Handler: tag("canary", &served)}}})
	}
	assign := func(h policy.Handler) map[string]string {
		out := map[string]string{}
		for i := range 2000 {
			user := fmt.Sprintf("user-%d", i)
			for range 3 { // the same user always lands on the same side
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("X-User", user)
				h.ServeHTTP(httptest.NewRecorder(), r)
				if prev, ok := out[user]; ok && prev != served {
					t.Fatalf("%s flipped from %s to %s", user, prev, served)
				}
				out[user] = served
			}
		}
		return out
	}
	at10, at20 := assign(build(10)), assign(build(20))
	moved, backwards := 0, 0
	for u, side := range at10 {
		if at20[u] != side {
			moved++
			if side == "canary" {
				backwards++
			}
		}
	}
	// Raising the canary from 10% to 20% moves about 10% of users, all towards the canary.
	if backwards != 0 || moved < 100 || moved > 300 {
		t.Fatalf("10%% -> 20%%: %d users moved, %d of them away from the canary", moved, backwards)
	}
	// Every node and every restart buckets a user the same way: FNV-1a's published test
	// vector pins the hash.
	if fnv1a("a") != 0xaf63dc4c8601ec8c {
		t.Fatalf("fnv1a(%q) = %#x: the bucketing hash changed", "a", fnv1a("a"))
	}
}

func TestStickyCookie(t *testing.T) {
	t.Parallel()
	var served string
	h := New(Options{StickyKind: "cookie", StickyArg: "limen_split", CookieMaxAge: 60,
		Sides: []Side{{Weight: 50, Handler: tag("a", &served)}, {Weight: 50, Handler: tag("b", &served)}}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	first := served
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "limen_split" || !cookies[0].HttpOnly {
		t.Fatalf("set cookies %v", cookies)
	}
	for range 20 {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookies[0])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if served != first || len(rec.Result().Cookies()) != 0 {
			t.Fatalf("with its cookie the user went to %s (first %s)", served, first)
		}
	}
	// A forged out-of-range bucket is replaced, not trusted.
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "limen_split", Value: "99999"})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if len(rec.Result().Cookies()) != 1 {
		t.Fatal("an invalid bucket cookie was kept")
	}
}

func TestStickyConsumer(t *testing.T) {
	t.Parallel()
	var served string
	h := New(Options{StickyKind: "consumer", Sides: []Side{{Weight: 50, Handler: tag("a", &served)}, {Weight: 50, Handler: tag("b", &served)}}})
	seen := map[string]bool{}
	for range 10 {
		r := httptest.NewRequest("GET", "/", nil)
		r = r.WithContext(policy.WithExchange(r.Context(), &policy.Exchange{Principal: &policy.Principal{ID: "acme", Method: "api_key"}}))
		h.ServeHTTP(httptest.NewRecorder(), r)
		seen[served] = true
	}
	if len(seen) != 1 {
		t.Fatalf("consumer acme was served by %v", seen)
	}
}
