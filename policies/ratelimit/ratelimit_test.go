package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/state"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func serve(p policy.Policy, ip string, mutate func(*http.Request, *policy.Exchange)) policytest.Result {
	r := httptest.NewRequest("GET", "/x", nil)
	ex := &policy.Exchange{Route: "orders"}
	if ip != "" {
		ex.ClientIP = netip.MustParseAddr(ip)
	}
	if mutate != nil {
		mutate(r, ex)
	}
	return policytest.Serve(p, r, ex, nil)
}

func frozen(p policy.Policy, at time.Time) { p.(*limiter).now = func() time.Time { return at } }

func TestRateLimitByClientIP(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"limits": [{"requests": 3, "per": "1m", "name": "per-minute"}]}`)
	frozen(p, time.Unix(1_000_000, 0))
	for i := range 3 {
		res := serve(p, "192.0.2.1", nil)
		if res.Err != nil {
			t.Fatalf("request %d refused: %v", i, res.Err)
		}
		if got, want := res.Rec.Header().Get("RateLimit"), `"per-minute";r=`+string(rune('2'-i))+`;t=`; !strings.HasPrefix(got, want) {
			t.Errorf("RateLimit %q, want prefix %q", got, want)
		}
		if got := res.Rec.Header().Get("RateLimit-Policy"); got != `"per-minute";q=3;w=60` {
			t.Errorf("RateLimit-Policy %q", got)
		}
	}
	res := serve(p, "192.0.2.1", nil)
	pe := policytest.PolicyError(res.Err)
	if pe == nil || pe.Status != 429 || pe.Code != "rate_limited" || res.Reached {
		t.Fatalf("4th request: %v", res.Err)
	}
	if pe.Header.Get("Retry-After") != "20" || !strings.HasPrefix(pe.Header.Get("RateLimit"), `"per-minute";r=0;`) {
		t.Errorf("429 headers %v", pe.Header)
	}
	// Another client has its own budget.
	if res := serve(p, "192.0.2.2", nil); res.Err != nil {
		t.Fatalf("another client: %v", res.Err)
	}
}

// TestIPv6GroupedByPrefix: addresses in one /64 share a budget; another /64 does not.
func TestIPv6GroupedByPrefix(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"limits": [{"requests": 2, "per": "1h"}]}`)
	frozen(p, time.Unix(1_000_000, 0))
	serve(p, "2001:db8:1:1::1", nil)
	serve(p, "2001:db8:1:1::2", nil)
	if res := serve(p, "2001:db8:1:1:ffff::9", nil); res.Err == nil {
		t.Fatal("a third address in the same /64 got a fresh budget")
	}
	if res := serve(p, "2001:db8:1:2::1", nil); res.Err != nil {
		t.Fatalf("another /64: %v", res.Err)
	}
	// IPv4-mapped addresses count as their IPv4 address.
	q := policytest.MustBuild(t, Kind, `{"limits": [{"requests": 1, "per": "1h"}]}`)
	frozen(q, time.Unix(1_000_000, 0))
	serve(q, "192.0.2.9", nil)
	if res := serve(q, "::ffff:192.0.2.9", nil); res.Err == nil {
		t.Fatal("a mapped address escaped the IPv4 client's limit")
	}
}

func TestKeysAndMissingKey(t *testing.T) {
	t.Parallel()
	acme := &policy.Principal{ID: "acme", Method: "api_key", Claims: map[string]any{"tenant": "t1"}}
	withPrincipal := func(p *policy.Principal) func(*http.Request, *policy.Exchange) {
		return func(_ *http.Request, ex *policy.Exchange) { ex.Principal = p }
	}
	for _, tc := range []struct {
		config string
		mutate func(*http.Request, *policy.Exchange)
		status int
	}{
		{`{"key": ["consumer"], "limits": [{"requests": 1, "per": "1h"}]}`, withPrincipal(acme), 0},
		{`{"key": ["consumer"], "limits": [{"requests": 1, "per": "1h"}]}`, nil, 0}, // no consumer: allowed by default
		{`{"key": ["consumer"], "missing_key": "deny", "limits": [{"requests": 1, "per": "1h"}]}`, nil, 429},
		{`{"key": ["consumer"], "missing_key": "deny", "limits": [{"requests": 1, "per": "1h"}]}`, withPrincipal(&policy.Principal{ID: "guest", Method: "anonymous"}), 429},
		{`{"key": ["header:x-tenant"], "limits": [{"requests": 1, "per": "1h"}]}`, func(r *http.Request, _ *policy.Exchange) { r.Header.Set("X-Tenant", "t1") }, 0},
		{`{"key": ["claim:tenant", "route"], "limits": [{"requests": 1, "per": "1h"}]}`, withPrincipal(acme), 0},
	} {
		p := policytest.MustBuild(t, Kind, tc.config)
		res := serve(p, "192.0.2.1", tc.mutate)
		if tc.status != 0 {
			if pe := policytest.PolicyError(res.Err); pe == nil || pe.Status != tc.status {
				t.Errorf("%s: %v, want %d", tc.config, res.Err, tc.status)
			}
			continue
		}
		if res.Err != nil {
			t.Errorf("%s: first request refused: %v", tc.config, res.Err)
		}
	}
}

// TestCountersSurviveReloads: counters live in the pool under the instance id and key spec, so
// a reload keeps what was counted, also when it changes the rate (GCRA keeps the time a key has
// used up, which the new rate then applies to); a new key spec starts fresh.
func TestCountersSurviveReloads(t *testing.T) {
	t.Parallel()
	pool := &policytest.Pool{}
	opts := func(bc *policy.BuildContext) { bc.Pool, bc.ID = pool, "public-limit" }
	at := time.Unix(1_000_000, 0)
	build := func(cfg string) *limiter {
		p := policytest.MustBuild(t, Kind, cfg, opts).(*limiter)
		p.now = func() time.Time { return at }
		return p
	}
	a := build(`{"limits": [{"requests": 2, "per": "1h"}]}`)
	serve(a, "192.0.2.1", nil)
	serve(a, "192.0.2.1", nil)
	b := build(`{"limits": [{"requests": 2, "per": "1h"}]}`) // the next snapshot's instance
	a.Close()
	if res := serve(b, "192.0.2.1", nil); res.Err == nil {
		t.Fatal("the reload reset the counters")
	}
	c := build(`{"limits": [{"requests": 4, "per": "1h"}]}`) // a rate change
	b.Close()
	if res := serve(c, "192.0.2.1", nil); res.Err == nil {
		t.Fatal("a rate change reset the counters: the hour's allowance was used")
	}
	at = at.Add(15 * time.Minute) // one interval of the new rate
	if res := serve(c, "192.0.2.1", nil); res.Err != nil {
		t.Fatalf("the new rate does not apply: %v", res.Err)
	}
	d := build(`{"key": ["client_ip", "route"], "limits": [{"requests": 4, "per": "1h"}]}`)
	if res := serve(d, "192.0.2.1", nil); res.Err != nil {
		t.Fatalf("a new key spec did not start fresh: %v", res.Err)
	}
	c.Close()
	d.Close()
	if pool.Len() != 0 {
		t.Errorf("the pool still holds %d limiters", pool.Len())
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		`{}`,
		`{"limits": []}`,
		`{"limits": [{"requests": 0, "per": "1s"}]}`,
		`{"limits": [{"requests": 10, "per": "0s"}]}`,
		`{"limits": [{"requests": 10, "per": 1}]}`,
		`{"key": ["ip"], "limits": [{"requests": 1, "per": "1s"}]}`,
		`{"key": ["header"], "limits": [{"requests": 1, "per": "1s"}]}`,
		`{"limits": [{"requests": 1, "per": "1s", "name": "a b"}]}`,
		`{"limits": [{"requests": 1, "per": "1s", "name": "x"}, {"requests": 2, "per": "1m", "name": "x"}]}`,
		`{"ipv6_prefix": 129, "limits": [{"requests": 1, "per": "1s"}]}`,
		`{"missing_key": "maybe", "limits": [{"requests": 1, "per": "1s"}]}`,
	} {
		if _, err := policytest.Build(Kind, bad); err == nil {
			t.Errorf("%s built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	// A Redis client connects lazily: building sends nothing anywhere.
	r, err := state.NewRedis(state.RedisOptions{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	policytest.CheckDocExamples(t, "../../docs/policies/rate_limit.md", Kind, func(bc *policy.BuildContext) {
		bc.Shared = map[string]any{"redis": r}
	})
}

func TestRedisBackendNeedsState(t *testing.T) {
	t.Parallel()
	if _, err := policytest.Build(Kind, `{"backend": "redis", "limits": [{"requests": 1, "per": "1s"}]}`); err == nil {
		t.Fatal("backend: redis built without state.redis")
	}
}

// BenchmarkRateLimit is the policy's hot path for a known client: key building, the limiter and
// the response headers.
func BenchmarkRateLimit(b *testing.B) {
	p := policytest.MustBuild(b, Kind, `{"limits": [{"requests": 1000000000, "per": "1s"}, {"requests": 1000000000, "per": "24h"}]}`)
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	ex := &policy.Exchange{ClientIP: netip.MustParseAddr("203.0.113.7")}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLongKeysAreDigested: a 64 KiB header value is stored as a 32-byte digest.
func TestLongKeysAreDigested(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"key": ["header:X-Tenant"], "limits": [{"requests": 1, "per": "1h"}]}`).(*limiter)
	long := strings.Repeat("t", 64<<10)
	set := func(r *http.Request, _ *policy.Exchange) { r.Header.Set("X-Tenant", long) }
	if res := serve(p, "192.0.2.1", set); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := serve(p, "192.0.2.1", set); res.Err == nil {
		t.Fatal("the same long key was not limited")
	}
	for i := range p.store.Shards() {
		for _, k := range p.store.Keys(i) {
			if len(k) > 64 {
				t.Fatalf("a %d-byte key was stored", len(k))
			}
		}
	}
}
